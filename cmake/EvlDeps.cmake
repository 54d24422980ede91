# Dependencies come from Debian packages only; each missing one names its package.
find_package(PkgConfig)
find_package(Threads REQUIRED)

# evl_require(TARGET PKGCONFIG_NAME HEADER LIBRARY DEBIAN_PACKAGE)
function(evl_require target pcname header lib debpkg)
  if(TARGET evl::${target})
    return()
  endif()
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(EVL_PC_${target} QUIET IMPORTED_TARGET ${pcname})
  endif()
  if(EVL_PC_${target}_FOUND)
    add_library(evl::${target} ALIAS PkgConfig::EVL_PC_${target})
    set_target_properties(PkgConfig::EVL_PC_${target} PROPERTIES IMPORTED_GLOBAL TRUE)
    return()
  endif()
  find_path(EVL_${target}_INC ${header})
  find_library(EVL_${target}_LIB ${lib})
  if(NOT EVL_${target}_INC OR NOT EVL_${target}_LIB)
    message(FATAL_ERROR
      "evlog needs ${pcname} (${header}, lib${lib}): install the Debian package "
      "'${debpkg}' (apt-get install ${debpkg}), or run scripts/deps.sh")
  endif()
  add_library(evl::${target} INTERFACE IMPORTED GLOBAL)
  set_target_properties(evl::${target} PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES ${EVL_${target}_INC}
    INTERFACE_LINK_LIBRARIES ${EVL_${target}_LIB})
endfunction()

evl_require(lmdb lmdb lmdb.h lmdb liblmdb-dev)
evl_require(msgpack msgpack msgpack.h msgpackc libmsgpack-dev)
evl_require(jansson jansson jansson.h jansson libjansson-dev)
# libcrypto (OpenSSL) for SHA-256: the log's hash chain and hashed tokens
evl_require(crypto libcrypto openssl/evp.h crypto libssl-dev)
evl_require(sqlite3 sqlite3 sqlite3.h sqlite3 libsqlite3-dev)
evl_require(event libevent event2/event.h event libevent-dev)
evl_require(event_pthreads libevent_pthreads event2/thread.h event_pthreads libevent-dev)
