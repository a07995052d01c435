/*
 * iobuf.c — the buffer free list.
 *
 * The free list is capped so that a burst of busy clients does not pin its
 * peak memory forever.
 */
#include <stdlib.h>
#include <string.h>

#include "iobuf.h"

#define FREE_LIST_MAX 64

static struct iobuf *free_list;
static int free_count;

struct iobuf *iobuf_get(void)
{
	struct iobuf *buf = free_list;

	if (buf) {
		free_list = buf->next_free;
		free_count--;
	} else {
		buf = malloc(sizeof(*buf));
		if (!buf)
			return NULL;
	}
	buf->start = buf->scanned = buf->end = 0;
	buf->next_free = NULL;
	return buf;
}

void iobuf_put(struct iobuf *buf)
{
	if (!buf)
		return;
	if (free_count >= FREE_LIST_MAX) {
		free(buf);
		return;
	}
	buf->next_free = free_list;
	free_list = buf;
	free_count++;
}

void iobuf_compact(struct iobuf *buf)
{
	if (buf->start == 0)
		return;
	memmove(buf->data, buf->data + buf->start, buf->end - buf->start);
	buf->scanned -= buf->start;
	buf->end -= buf->start;
	buf->start = 0;
}
