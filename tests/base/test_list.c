/*
 * test_list.c — Criterion tests for base/list.h, the intrusive lists whose
 * membership is every object's state: order, counts, removal while walking,
 * moving between lists, and a removed node left pointing at itself.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "list.h"

struct item {
	int value;
	struct list_node node;    /* not first: list_entry() must subtract the offset */
};

/* The values on l, head to tail, as "1 2 3", checked against the walk back too. */
static const char *values(const struct list *l)
{
	static char out[256];
	size_t len = 0;
	int forward = 0, backward = 0;

	out[0] = '\0';
	for (const struct list_node *n = l->head.next; n != &l->head; n = n->next, forward++) {
		cr_assert_eq(n->next->prev, n, "broken back link");
		len += (size_t)snprintf(out + len, sizeof(out) - len, "%s%d", len ? " " : "",
					list_entry(n, struct item, node)->value);
	}
	for (const struct list_node *n = l->head.prev; n != &l->head; n = n->prev)
		backward++;
	cr_assert_eq(forward, l->count, "count %d, %d nodes forward", l->count, forward);
	cr_assert_eq(backward, l->count, "count %d, %d nodes backward", l->count, backward);
	return out;
}

static void fill(struct list *l, struct item *items, int n)
{
	list_init(l);
	for (int i = 0; i < n; i++) {
		items[i].value = i + 1;
		list_node_init(&items[i].node);
		list_push_tail(l, &items[i].node);
	}
}

Test(list, a_new_list_is_empty)
{
	struct list l;

	list_init(&l);
	cr_assert(list_empty(&l));
	cr_assert_eq(l.count, 0);
	cr_assert_null(list_first(&l));
	cr_assert_null(list_last(&l));
	cr_assert_str_eq(values(&l), "");
}

Test(list, push_tail_keeps_arrival_order_push_head_goes_first)
{
	struct list l;
	struct item a = { .value = 1 }, b = { .value = 2 }, c = { .value = 3 };

	list_init(&l);
	list_push_tail(&l, &a.node);
	list_push_tail(&l, &b.node);
	list_push_head(&l, &c.node);
	cr_assert_str_eq(values(&l), "3 1 2");
	cr_assert_not(list_empty(&l));
	cr_assert_eq(list_entry(list_first(&l), struct item, node), &c);
	cr_assert_eq(list_entry(list_last(&l), struct item, node), &b);
}

Test(list, remove_first_middle_last)
{
	struct list l;
	struct item it[5];

	fill(&l, it, 5);
	list_remove(&l, &it[2].node);
	cr_assert_str_eq(values(&l), "1 2 4 5");
	list_remove(&l, &it[0].node);
	cr_assert_str_eq(values(&l), "2 4 5");
	list_remove(&l, &it[4].node);
	cr_assert_str_eq(values(&l), "2 4");
	list_remove(&l, &it[1].node);
	list_remove(&l, &it[3].node);
	cr_assert(list_empty(&l));
	cr_assert_null(list_first(&l));
	cr_assert_eq(l.head.next, &l.head, "an emptied list points at its own head");
	cr_assert_eq(l.head.prev, &l.head);
}

Test(list, a_removed_node_points_at_itself)
{
	struct list l;
	struct item it[3];

	fill(&l, it, 3);
	list_remove(&l, &it[1].node);
	cr_assert_eq(it[1].node.next, &it[1].node);
	cr_assert_eq(it[1].node.prev, &it[1].node);
}

Test(list, moving_between_lists_is_a_state_change)
{
	struct list idle, leased;
	struct item it[3];

	fill(&idle, it, 3);
	list_init(&leased);
	/* What server_set_state() does: off the old list, onto the tail of the new one. */
	list_remove(&idle, &it[0].node);
	list_push_tail(&leased, &it[0].node);
	list_remove(&idle, &it[2].node);
	list_push_tail(&leased, &it[2].node);
	cr_assert_str_eq(values(&idle), "2");
	cr_assert_str_eq(values(&leased), "1 3");
}

Test(list, walking_safe_against_removing_the_current_node)
{
	struct list l, odd;
	struct item it[6];
	struct list_node *pos, *tmp;
	int seen = 0;

	fill(&l, it, 6);
	list_init(&odd);
	list_for_each_safe(pos, tmp, &l) {
		struct item *x = list_entry(pos, struct item, node);
		seen++;
		if (x->value % 2) {
			list_remove(&l, pos);
			list_push_tail(&odd, pos);
		}
	}
	cr_assert_eq(seen, 6, "every node visited once");
	cr_assert_str_eq(values(&l), "2 4 6");
	cr_assert_str_eq(values(&odd), "1 3 5");
}

Test(list, walking_an_empty_list_visits_nothing)
{
	struct list l;
	struct list_node *pos, *tmp;
	int seen = 0;

	list_init(&l);
	list_for_each_safe(pos, tmp, &l)
		seen++;
	cr_assert_eq(seen, 0);
}

Test(list, walking_while_removing_everything)
{
	struct list l;
	struct item it[4];
	struct list_node *pos, *tmp;

	fill(&l, it, 4);
	list_for_each_safe(pos, tmp, &l)
		list_remove(&l, pos);
	cr_assert(list_empty(&l));
	cr_assert_str_eq(values(&l), "");
}

Test(list, a_statically_initialised_list_works_like_list_init)
{
	/* How pool.c and server.c declare theirs. */
	static struct list l = { { &l.head, &l.head }, 0 };
	struct item a = { .value = 7 };

	cr_assert(list_empty(&l));
	list_push_tail(&l, &a.node);
	cr_assert_str_eq(values(&l), "7");
	list_remove(&l, &a.node);
	cr_assert(list_empty(&l));
}
