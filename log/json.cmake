target_sources(evlog PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/json.c)
