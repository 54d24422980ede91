/* evlog/json.h: msgpack <-> JSON, the CloudEvents view, input parsing. */
#include "evlog/json.h"
#include "evlog/mp.h"
#include "test.h"

static json_t *parse(const char *s)
{
    json_error_t e;
    json_t *j = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (!j) {
        fprintf(stderr, "bad test JSON %s: %s\n", s, e.text);
        exit(1);
    }
    return j;
}

/* msgpack of a JSON text, checked by the same pre-scan the log applies. */
static void to_mp(const char *text, msgpack_sbuffer *sb)
{
    json_t *j = parse(text);
    msgpack_sbuffer_init(sb);
    OK(evl_json_to_msgpack(j, sb));
    OK(evl_mp_check(sb->data, sb->size, EVL_MAX_DEPTH, 0, NULL));
    json_decref(j);
}

static void check_bytes(const char *text, const char *want, size_t want_len)
{
    msgpack_sbuffer sb;
    to_mp(text, &sb);
    if (sb.size != want_len || memcmp(sb.data, want, want_len)) {
        fprintf(stderr, "msgpack of %s: got", text);
        for (size_t i = 0; i < sb.size; i++)
            fprintf(stderr, " %02x", (uint8_t)sb.data[i]);
        fputc('\n', stderr);
        exit(1);
    }
    msgpack_sbuffer_destroy(&sb);
}

/* msgpack bytes -> JSON text (compact, sorted keys) */
static char *from_mp(const void *mp, size_t len, int want_rc)
{
    json_t *j = NULL;
    CHECK_RC(evl_json_from_msgpack(mp, len, &j), want_rc);
    if (want_rc != EVL_OK) {
        CHECK(j == NULL);
        return NULL;
    }
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    return s;
}

static void check_json(const void *mp, size_t len, const char *want)
{
    char *got = from_mp(mp, len, EVL_OK);
    if (strcmp(got, want)) {
        fprintf(stderr, "JSON: got %s, want %s\n", got, want);
        exit(1);
    }
    free(got);
}

static char *nest(int depth)
{
    static char buf[256];
    buf[0] = '\0';
    for (int i = 0; i < depth; i++)
        strcat(buf, "{\"k\":");
    strcat(buf, "1");
    for (int i = 0; i < depth; i++)
        strcat(buf, "}");
    return buf;
}

static void test_to_msgpack(void)
{
    check_bytes("{\"a\":1}", "\x81\xa1" "a" "\x01", 4);
    check_bytes("[-1,null,true,false]", "\x94\xff\xc0\xc3\xc2", 5);
    check_bytes("1.5", "\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", 9);
    check_bytes("\"h\\u00e9\"", "\xa3h\xc3\xa9", 4);
    check_bytes("9223372036854775807", "\xcf\x7f\xff\xff\xff\xff\xff\xff\xff", 9);
    check_bytes("-9223372036854775808", "\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9);
    /* NUL inside a key and a value survives (json_loads refuses such keys) */
    json_t *o = json_object();
    json_object_setn_new(o, "a\0b", 3, json_stringn("\0", 1));
    msgpack_sbuffer nb;
    msgpack_sbuffer_init(&nb);
    OK(evl_json_to_msgpack(o, &nb));
    CHECK(nb.size == 7 && !memcmp(nb.data, "\x81\xa3" "a\0b" "\xa1\0", 7));
    msgpack_sbuffer_destroy(&nb);
    json_decref(o);

    /* key order is the input's */
    msgpack_sbuffer sb;
    to_mp("{\"z\":1,\"a\":2,\"m\":3}", &sb);
    CHECK(sb.size == 10 && sb.data[2] == 'z' && sb.data[5] == 'a' && sb.data[8] == 'm');
    msgpack_sbuffer_destroy(&sb);

    /* depth: 16 levels pass, 17 are refused and leave the buffer as it was */
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_write(&sb, "\x01", 1);
    json_t *ok = parse(nest(16)), *deep = parse(nest(17)), *deep_arr = parse(
        "[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]");
    OK(evl_json_to_msgpack(ok, &sb));
    size_t size = sb.size;
    CHECK_RC(evl_json_to_msgpack(deep, &sb), EVL_EDEPTH);
    CHECK_RC(evl_json_to_msgpack(deep_arr, &sb), EVL_EDEPTH);
    CHECK(sb.size == size);
    OK(evl_mp_check(sb.data + 1, sb.size - 1, EVL_MAX_DEPTH, EVL_MP_STRING_KEYS, NULL));
    json_decref(ok);
    json_decref(deep);
    json_decref(deep_arr);
    msgpack_sbuffer_destroy(&sb);
}

static void test_from_msgpack(void)
{
    check_json("\x83\xa1" "a\x01\xa1" "b\xff\xa1" "c\xc0", 10, "{\"a\":1,\"b\":-1,\"c\":null}");
    check_json("\x92\xc3\xc2", 3, "[true,false]");
    check_json("\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", 9, "1.5");
    check_json("\xca\x3f\xc0\x00\x00", 5, "1.5"); /* float32 */
    check_json("\xcf\x7f\xff\xff\xff\xff\xff\xff\xff", 9, "9223372036854775807");
    check_json("\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9, "-9223372036854775808");
    /* beyond int64: a real */
    char *big = from_mp("\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9, EVL_OK);
    CHECK(big && strtod(big, NULL) == 18446744073709551615.0 && strpbrk(big, ".eE"));
    free(big);
    /* NaN has no JSON spelling */
    check_json("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", 9, "null");
    /* bin and ext: base64 */
    check_json("\xc4\x03\x01\x02\x03", 5, "\"AQID\"");
    check_json("\xc4\x00", 2, "\"\"");
    check_json("\xc4\x01\xff", 3, "\"/w==\"");
    check_json("\xc4\x02\xfb\xff", 4, "\"+/8=\"");
    check_json("\xd4\x01\xff", 3, "\"/w==\""); /* fixext1 */
    check_json("\xa3h\xc3\xa9", 4, "\"h\xc3\xa9\"");
    /* keys with NUL */
    check_json("\x81\xa3" "a\0b" "\x01", 6, "{\"a\\u0000b\":1}");

    /* what is not one well-formed value */
    from_mp("\x81\x01\x01", 3, EVL_EMSGPACK);         /* integer key */
    from_mp("\x92\x01", 2, EVL_EMSGPACK);             /* truncated */
    from_mp("\x01\x02", 2, EVL_EMSGPACK);             /* trailing bytes */
    from_mp("\xc1", 1, EVL_EMSGPACK);                 /* never used */
    from_mp("\xa2\xc3\x28", 3, EVL_EMSGPACK);         /* invalid UTF-8 */
    from_mp("\xdd\xff\x00\x00\x00", 5, EVL_EMSGPACK); /* a count beyond the input */
    from_mp("", 0, EVL_EMSGPACK);
    uint8_t deep[17];
    memset(deep, 0x91, 16);
    deep[16] = 0x01;
    check_json(deep, 17, "[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]");
    uint8_t deeper[18];
    memset(deeper, 0x91, 17);
    deeper[17] = 0x01;
    from_mp(deeper, 18, EVL_EDEPTH);
}

static void test_event(void)
{
    msgpack_sbuffer data, meta;
    to_mp("{\"model\":\"m\",\"n\":3}", &data);
    to_mp("{\"actor\":\"alice\"}", &meta);
    evl_event ev;
    memset(&ev, 0, sizeof ev);
    ev.position = 42;
    ev.revision = 7;
    ev.time_ns = 1795429800123456789LL; /* 2026-11-23T10:30:00.123456789Z */
    OK(evl_uuid_parse("0190a5f3-1c2b-7d4e-8f60-123456789abc", 36, ev.id));
    ev.stream = "job-1xyz";
    ev.stream_len = 5;
    ev.type = "JobQueuedxyz";
    ev.type_len = 9;
    ev.data = (const uint8_t *)data.data;
    ev.data_len = data.size;
    ev.meta = (const uint8_t *)meta.data;
    ev.meta_len = meta.size;
    json_t *j = evl_json_event(&ev);
    CHECK(j);
    char *s = json_dumps(j, JSON_COMPACT);
    const char *want =
        "{\"specversion\":\"1.0\",\"id\":\"0190a5f3-1c2b-7d4e-8f60-123456789abc\","
        "\"source\":\"evlog\",\"type\":\"JobQueued\",\"subject\":\"job-1\","
        "\"time\":\"2026-11-23T10:30:00.123456789Z\",\"data\":{\"model\":\"m\",\"n\":3},"
        "\"position\":42,\"revision\":7,\"meta\":{\"actor\":\"alice\"}}";
    if (strcmp(s, want)) {
        fprintf(stderr, "event JSON:\n got %s\nwant %s\n", s, want);
        exit(1);
    }
    free(s);
    json_decref(j);

    /* no meta: an empty object; corrupt data: NULL */
    ev.meta = NULL;
    ev.meta_len = 0;
    j = evl_json_event(&ev);
    CHECK(j && json_is_object(json_object_get(j, "meta")) &&
          json_object_size(json_object_get(j, "meta")) == 0);
    json_decref(j);
    ev.data_len = data.size - 1;
    CHECK(evl_json_event(&ev) == NULL);
    msgpack_sbuffer_destroy(&data);
    msgpack_sbuffer_destroy(&meta);
}

static int parse_in(const char *text, evl_json_in *in, int want)
{
    json_t *j = parse(text);
    const char *why = NULL;
    int rc = evl_json_parse_event(j, in, &why);
    json_decref(j);
    if (rc != want) {
        fprintf(stderr, "parse %s: %s (%s), want %s\n", text, evl_errname(rc),
                why ? why : "-", evl_errname(want));
        exit(1);
    }
    CHECK(rc == EVL_OK ? why == NULL : why != NULL);
    return rc;
}

static void test_parse_event(void)
{
    evl_json_in in;
    evl_event_in ev;
    parse_in("{\"type\":\"A\",\"data\":{\"x\":[1,2]},\"id\":\"0190a5f3-1c2b-7d4e-8f60-"
             "123456789abc\",\"meta\":{\"m\":true},\"subject\":\"job-1\","
             "\"specversion\":\"1.0\",\"position\":9,\"time\":\"x\",\"source\":\"elsewhere\"}",
             &in, EVL_OK);
    CHECK(!strcmp(in.type, "A") && !strcmp(in.stream, "job-1") && in.has_id);
    CHECK(in.id[0] == 0x01 && in.id[15] == 0xbc);
    evl_json_in_view(&in, &ev);
    CHECK(ev.type == in.type && ev.id == in.id && ev.data_len == in.data.size &&
          ev.meta_len == in.meta.size && ev.meta_len > 0);
    OK(evl_mp_check(ev.data, ev.data_len, EVL_MAX_DEPTH, EVL_MP_STRING_KEYS, NULL));
    check_json(ev.data, ev.data_len, "{\"x\":[1,2]}");
    check_json(ev.meta, ev.meta_len, "{\"m\":true}");
    evl_json_in_free(&in);
    evl_json_in_free(&in); /* twice is harmless */

    /* the minimal form: no id, no meta, no data, no subject */
    parse_in("{\"type\":\"B\"}", &in, EVL_OK);
    evl_json_in_view(&in, &ev);
    CHECK(in.stream == NULL && !in.has_id && ev.id == NULL);
    CHECK(ev.data_len == 1 && ((const uint8_t *)ev.data)[0] == 0x80);
    CHECK(ev.meta == NULL && ev.meta_len == 0);
    evl_json_in_free(&in);
    parse_in("{\"type\":\"B\",\"data\":null,\"meta\":null,\"id\":null}", &in, EVL_OK);
    evl_json_in_free(&in);
    /* 32 hex digits are a UUID too */
    parse_in("{\"type\":\"B\",\"id\":\"0190a5f31c2b7d4e8f60123456789abc\"}", &in, EVL_OK);
    CHECK(in.has_id && in.id[15] == 0xbc);
    evl_json_in_free(&in);

    /* refusals; the result is always safe to free */
    const struct { const char *text; int rc; } bad[] = {
        {"[]", EVL_EJSON},
        {"{}", EVL_EJSON},
        {"{\"type\":3}", EVL_EJSON},
        {"{\"type\":\"a\\u0000b\"}", EVL_EJSON},
        {"{\"type\":\"A\",\"subject\":5}", EVL_EJSON},
        {"{\"type\":\"A\",\"data\":[1]}", EVL_EDATA},
        {"{\"type\":\"A\",\"data\":\"x\"}", EVL_EDATA},
        {"{\"type\":\"A\",\"data\":3}", EVL_EDATA},
        {"{\"type\":\"A\",\"meta\":[]}", EVL_EMETA},
        {"{\"type\":\"A\",\"meta\":\"x\"}", EVL_EMETA},
        {"{\"type\":\"A\",\"id\":\"nope\"}", EVL_EID},
        {"{\"type\":\"A\",\"id\":12}", EVL_EID},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        parse_in(bad[i].text, &in, bad[i].rc);
        evl_json_in_free(&in);
    }
    char text[512];
    snprintf(text, sizeof text, "{\"type\":\"A\",\"data\":%s}", nest(17));
    parse_in(text, &in, EVL_EDEPTH);
    evl_json_in_free(&in);
    snprintf(text, sizeof text, "{\"type\":\"A\",\"meta\":%s}", nest(17));
    parse_in(text, &in, EVL_EDEPTH);
    evl_json_in_free(&in);
    snprintf(text, sizeof text, "{\"type\":\"A\",\"data\":%s}", nest(16));
    parse_in(text, &in, EVL_OK);
    evl_json_in_free(&in);
    CHECK_RC(evl_json_parse_event(NULL, &in, NULL), EVL_EJSON);
    evl_json_in_free(&in);
}

static void test_expected(void)
{
    uint64_t r = 0;
    OK(evl_json_parse_expected("any", &r));
    CHECK(r == EVL_REV_ANY);
    OK(evl_json_parse_expected("no_stream", &r));
    CHECK(r == EVL_REV_NO_STREAM);
    OK(evl_json_parse_expected("exists", &r));
    CHECK(r == EVL_REV_EXISTS);
    OK(evl_json_parse_expected("0", &r));
    CHECK(r == 0);
    OK(evl_json_parse_expected("12345", &r));
    CHECK(r == 12345);
    OK(evl_json_parse_expected("18446744073709551612", &r));
    CHECK(r == EVL_REV_EXISTS - 1);
    const char *bad[] = {"", "-1", "+1", " 1", "1 ", "1x", "Any", "0x10",
                         "18446744073709551613", "18446744073709551615",
                         "18446744073709551616", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = 77;
        if (evl_json_parse_expected(bad[i], &r) != EVL_EINVAL || r != 77) {
            fprintf(stderr, "expected revision '%s' was accepted\n", bad[i]);
            exit(1);
        }
    }
    CHECK_RC(evl_json_parse_expected(NULL, &r), EVL_EINVAL);
}

int main(void)
{
    test_to_msgpack();
    test_from_msgpack();
    test_event();
    test_parse_event();
    test_expected();
    puts("json_test: ok");
    return 0;
}
