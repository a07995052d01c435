/*
 * admin_show.h — the admin console's SHOW commands.
 *
 *   admin_show_table()  the columns a SHOW returns (NULL for other commands)
 *   admin_show()        append its DataRows; returns how many
 */
#ifndef PGLEASE_ADMIN_SHOW_H
#define PGLEASE_ADMIN_SHOW_H

#include "admin_parse.h"
#include "admin_reply.h"

const struct table *admin_show_table(enum admin_verb verb);
int admin_show(struct reply *r, enum admin_verb verb);

#endif
