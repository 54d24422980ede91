/* Fuzz the projection file parser: directives, handler splitting, the SQL
 * compiled against an in-memory SQLite under the projection authorizer,
 * parameter planning. */
#include "evlog/proj.h"
#include "projections/proj_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    evl_proj_spec *sp = NULL;
    char err[512];
    if (evl_proj_spec_parse((const char *)data, size, "fuzz.sql", &sp, err, sizeof err) == EVL_OK) {
        plan pl; /* what a projector builds from it */
        evl__proj_plan_build(&pl, sp);
        evl__proj_plan_free(&pl, sp);
    }
    evl_proj_spec_free(sp);
    return 0;
}
