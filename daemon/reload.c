/*
 * reload.c — read the config file again and apply it to the running pools.
 *
 * What a reload changes, per database entry (matched by name):
 *   added     new clients can log in; pools whose conninfo names the user open
 *   removed   its pools close: clients without a lease get FATAL 57P01 now,
 *             leased ones when their transaction ends (pool/drain.c)
 *   conninfo  the pool's backends are retired (pool_reconnect): idle ones
 *             now, leased ones when their lease ends
 *   pool_size applies at once; idle backends above the new size close
 *   pool_mode the old pool keeps its clients, in the old mode, to their end;
 *             clients that log in from now on get a new pool
 * Global timeouts and sizes are read from cfg when used, so they apply at
 * once. listen_port, listen_addr, unix_socket_dir and unix_socket_mode need
 * a restart (logged, the running value kept). The client TLS files are read
 * again (tls_reload): new connections get the new certificate.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "authq.h"
#include "caps.h"
#include "daemon.h"
#include "drain.h"
#include "log.h"
#include "pool.h"
#include "reload.h"
#include "tls.h"

/* Replaced configs that pools may still point into. */
static struct config **old_configs;
static int old_count;

struct changes {
	int added, removed, changed;
};

static void log_errors(const char *path, char *errors)
{
	char *save = NULL;

	log_error("reload of %s failed; the running configuration is kept:", path);
	for (char *line = strtok_r(errors, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		log_error("  %s", line);
}

static int keep_string(char **next, const char *running, const char *key)
{
	if (strcmp(*next, running) == 0)
		return 0;
	log_warning("reload: %s changed from \"%s\" to \"%s\": restart pglease to apply it", key, running, *next);
	char *copy = strdup(running);
	if (!copy)
		return -1;
	free(*next);
	*next = copy;
	return 0;
}

static void keep_int(int *next, int running, const char *key, const char *fmt)
{
	char was[32], now[32];

	if (*next == running)
		return;
	snprintf(was, sizeof(was), fmt, running);
	snprintf(now, sizeof(now), fmt, *next);
	log_warning("reload: %s changed from %s to %s: restart pglease to apply it", key, was, now);
	*next = running;
}

/* Settings bound to the listening socket stay as they are until a restart. */
static int keep_restart_settings(struct config *next)
{
	keep_int(&next->listen_port, cfg->listen_port, "listen_port", "%d");
	keep_int(&next->unix_socket_mode, cfg->unix_socket_mode, "unix_socket_mode", "%04o");
	if (keep_string(&next->listen_addr, cfg->listen_addr, "listen_addr") < 0)
		return -1;
	return keep_string(&next->unix_socket_dir, cfg->unix_socket_dir, "unix_socket_dir");
}

static const struct db_config *find_exact(const struct config *c, const char *name)
{
	for (int i = 0; i < c->db_count; i++)
		if (strcmp(c->dbs[i].name, name) == 0)
			return &c->dbs[i];
	return NULL;
}

static bool entry_changed(const struct db_config *a, const struct db_config *b)
{
	bool auth_user_changed = (a->auth_user == NULL) != (b->auth_user == NULL) ||
				 (a->auth_user && strcmp(a->auth_user, b->auth_user) != 0);

	return strcmp(a->conninfo, b->conninfo) != 0 || a->pool_size != b->pool_size || a->pool_mode != b->pool_mode ||
	       a->max_db_connections != b->max_db_connections ||
	       a->max_db_client_connections != b->max_db_client_connections ||
	       a->reserve_pool_size != b->reserve_pool_size || auth_user_changed;
}

static struct changes count_changes(const struct config *prev, const struct config *next)
{
	struct changes ch = { 0, 0, 0 };

	for (int i = 0; i < next->db_count; i++) {
		const struct db_config *was = find_exact(prev, next->dbs[i].name);
		ch.added += !was;
		ch.changed += was && entry_changed(was, &next->dbs[i]);
	}
	for (int i = 0; i < prev->db_count; i++)
		ch.removed += !find_exact(next, prev->dbs[i].name);
	return ch;
}

/* cfg is already the new config; p->db still points into the old one. */
static void apply_to_pool(struct pool *p)
{
	const struct db_config *db = config_find_db(cfg, p->dbname);

	if (!db) {
		log_info("pool %s/%s: database removed by a reload; closing as leases end", p->dbname, p->user);
		drain_pool(p, POOL_CLOSE_AT_TX_END, "database removed by a reload");
		return;
	}
	if (pool_mode_for(db, p->user, cfg) != p->mode) {
		log_info("pool %s/%s: pool_mode changed to %s; current clients keep %s mode, new clients get a new pool",
			 p->dbname, p->user, pool_mode_name(pool_mode_for(db, p->user, cfg)), pool_mode_name(p->mode));
		pool_retire(p);
		return;
	}
	p->prewarmed = false;   /* pool_prewarm() marks it again if its conninfo still names the user */
	if (pool_reconfigure(p, db) < 0) {
		log_error("pool %s/%s: out of memory applying the reload; it keeps its old settings", p->dbname, p->user);
		pool_retire(p);
	}
}

static void apply_to_pools(void)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		if (!p->retired)
			apply_to_pool(p);
	}
	/* Retired pools too: idle backends above a lowered cap close, whichever pool holds them. */
	list_for_each_safe(pos, tmp, &all_pools)
		caps_trim_idle(list_entry(pos, struct pool, node));
}

static int keep_old(struct config *prev)
{
	struct config **grown = realloc(old_configs, (old_count + 1) * sizeof(*grown));

	if (!grown)
		return -1;
	old_configs = grown;
	old_configs[old_count++] = prev;
	return 0;
}

int reload_apply(void)
{
	char *errors = NULL;
	struct config *next = config_load(cfg->path, &errors);
	struct config *prev = (struct config *)cfg;
	struct auth_files *files = NULL;

	if (!next) {
		log_errors(cfg->path, errors ? errors : (char[]){ "unknown error" });
		free(errors);
		return -1;
	}
	/* The config, the userlist and the hba rules are swapped together or not at all. */
	if (!(files = auth_files_load(next, &errors))) {
		log_errors(cfg->path, errors ? errors : (char[]){ "unknown error" });
		free(errors);
		config_free(next);
		return -1;
	}
	if (keep_restart_settings(next) < 0 || keep_old(prev) < 0) {
		log_error("reload of %s failed: out of memory; the running configuration is kept", cfg->path);
		auth_files_free(files);
		config_free(next);
		return -1;
	}
	struct changes ch = count_changes(prev, next);
	cfg = next;
	auth_files_install(files);
	log_set_level(next->log_level);
	tls_reload();
	/* auth_query's answers may depend on what changed (auth_user, auth_query, auth_dbname, conninfo). */
	authq_reload();
	/* Caps apply from now on: backends opened before may sit above a lowered one until they come free. */
	caps_reloaded();
	apply_to_pools();
	pool_prewarm();
	reload_collect();
	log_info("reloaded %s: %d databases added, %d removed, %d changed", next->path, ch.added, ch.removed, ch.changed);
	return 0;
}

static bool points_into(const struct pool *p, const struct config *c)
{
	uintptr_t at = (uintptr_t)p->db, first = (uintptr_t)c->dbs;

	return at >= first && at < first + (uintptr_t)c->db_count * sizeof(*c->dbs);
}

static bool in_use(const struct config *c)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &all_pools)
		if (points_into(list_entry(pos, struct pool, node), c))
			return true;
	return false;
}

void reload_collect(void)
{
	for (int i = 0; i < old_count; i++) {
		if (in_use(old_configs[i]))
			continue;
		config_free(old_configs[i]);
		old_configs[i--] = old_configs[--old_count];
	}
}

void reload_free_all(void)
{
	for (int i = 0; i < old_count; i++)
		config_free(old_configs[i]);
	free(old_configs);
	old_configs = NULL;
	old_count = 0;
	config_free((struct config *)cfg);
	cfg = NULL;
}
