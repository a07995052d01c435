/*
 * list.h — intrusive doubly-linked lists.
 *
 * Objects embed a struct list_node and are on exactly one list at a time:
 * the list an object is on is its state (see pool/README.md).
 */
#ifndef PGLEASE_LIST_H
#define PGLEASE_LIST_H

#include <stddef.h>
#include <stdbool.h>

struct list_node {
	struct list_node *next, *prev;
};

struct list {
	struct list_node head;
	int count;
};

#define list_entry(node, type, member) \
	((type *)((char *)(node) - offsetof(type, member)))

static inline void list_init(struct list *l)
{
	l->head.next = l->head.prev = &l->head;
	l->count = 0;
}

static inline bool list_empty(const struct list *l)
{
	return l->count == 0;
}

static inline void list_node_init(struct list_node *n)
{
	n->next = n->prev = n;
}

static inline void list_insert(struct list_node *n, struct list_node *prev, struct list_node *next)
{
	n->prev = prev;
	n->next = next;
	prev->next = n;
	next->prev = n;
}

static inline void list_push_tail(struct list *l, struct list_node *n)
{
	list_insert(n, l->head.prev, &l->head);
	l->count++;
}

static inline void list_push_head(struct list *l, struct list_node *n)
{
	list_insert(n, &l->head, l->head.next);
	l->count++;
}

static inline void list_remove(struct list *l, struct list_node *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	list_node_init(n);
	l->count--;
}

static inline struct list_node *list_first(const struct list *l)
{
	return l->count ? l->head.next : NULL;
}

static inline struct list_node *list_last(const struct list *l)
{
	return l->count ? l->head.prev : NULL;
}

/* Safe against removal of the current node. */
#define list_for_each_safe(pos, tmp, l) \
	for ((pos) = (l)->head.next, (tmp) = (pos)->next; (pos) != &(l)->head; \
	     (pos) = (tmp), (tmp) = (pos)->next)

#endif
