/*
 * grow.c — growing byte buffers (grow.h). Doubling keeps appends amortised
 * constant; the first growth is at least 256 bytes, as small buffers are the
 * common case.
 */
#include <assert.h>
#include <stdlib.h>

#include "grow.h"

void *grow_bytes(void *data, size_t *cap, size_t need)
{
	assert(need > 0);
	if (data && need <= *cap)
		return data;
	size_t grown = *cap ? *cap : 256;
	while (grown < need)
		grown *= 2;
	void *bigger = realloc(data, grown);
	if (bigger)
		*cap = grown;
	return bigger;
}
