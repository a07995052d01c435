/*
 * test_pool.c — Criterion tests for the pure parts of pool/pool.c: a
 * database's effective pool size and mode (pool_effective_size(),
 * pool_effective_mode()), which pool creation, reload and SHOW DATABASES share.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "pool.h"

/* Defined in daemon/main.c, which is not in the library. */
struct ev_loop *loop;
const struct config *cfg;

Test(pool, effective_settings_fall_back_to_the_globals)
{
	struct config c = { .default_pool_size = 20, .pool_mode = POOL_MODE_TRANSACTION };
	struct db_config plain = { .name = "app", .pool_size = -1, .pool_mode = -1 };

	cr_assert_eq(pool_effective_size(&plain, &c), 20);
	cr_assert_eq(pool_effective_mode(&plain, &c), POOL_MODE_TRANSACTION);
	c.default_pool_size = 7;
	c.pool_mode = POOL_MODE_SESSION;
	cr_assert_eq(pool_effective_size(&plain, &c), 7);
	cr_assert_eq(pool_effective_mode(&plain, &c), POOL_MODE_SESSION);
}

Test(pool, effective_settings_prefer_the_conninfo)
{
	struct config c = { .default_pool_size = 20, .pool_mode = POOL_MODE_SESSION };
	struct db_config own = { .name = "reports", .pool_size = 5, .pool_mode = POOL_MODE_TRANSACTION };

	cr_assert_eq(pool_effective_size(&own, &c), 5);
	cr_assert_eq(pool_effective_mode(&own, &c), POOL_MODE_TRANSACTION);
}

/* What the loader gives for a conninfo without pool_size= / pool_mode=: the sample's "appdb". */
Test(pool, loaded_entry_without_own_keys_takes_the_globals)
{
	const char *me = __FILE__, *cut = strstr(me, "tests/pool/");
	char path[4096], *errors = NULL;
	struct config *c;

	snprintf(path, sizeof(path), "%.*sconf/pglease.ini", (int)(cut ? cut - me : 0), me);
	c = config_load(path, &errors);
	cr_assert_not_null(c, "%s: %s", path, errors ? errors : "");
	cr_assert_eq(pool_effective_size(config_find_db(c, "appdb"), c), c->default_pool_size);
	cr_assert_eq(pool_effective_mode(config_find_db(c, "appdb"), c), c->pool_mode);
	cr_assert_eq(pool_effective_size(config_find_db(c, "reports"), c), 5);
	cr_assert_eq(pool_effective_mode(config_find_db(c, "reports"), c), POOL_MODE_SESSION);
	config_free(c);
}
