/*
 * test_prepared.c — Criterion tests for pool/prepared.c (shared statements,
 * client registries, backend caches and LRU, the reply queue); rewrite.c's
 * own are in test_rewrite.c.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "prepared.h"
#include "../lib/alloc_fail.h"

static struct pstmt *stmt(const char *sql)
{
	uint8_t key[256];
	size_t n = strlen(sql) + 1;

	memcpy(key, sql, n);
	key[n] = key[n + 1] = 0;      /* no parameter types */
	return pstmt_get(key, (uint32_t)n + 2);
}

/* ---- shared statements ---- */

Test(pstmt, identical_text_is_shared_and_freed_with_its_last_reference)
{
	uint32_t live = pstmt_live_count();
	struct pstmt *a = stmt("select 1"), *b = stmt("select 1"), *c = stmt("select 2");

	cr_assert_eq(a, b);
	cr_assert_neq(a, c);
	cr_assert_str_neq(a->name, c->name);
	cr_assert_eq(strncmp(a->name, "pgl_", 4), 0);
	cr_assert_eq(pstmt_live_count(), live + 2);
	pstmt_put(a);
	pstmt_put(b);
	pstmt_put(c);
	cr_assert_eq(pstmt_live_count(), live);
}

Test(pstmt, parameter_types_make_a_different_statement)
{
	uint8_t k1[] = "select $1\0\0\1\0\0\0\x17";
	uint8_t k2[] = "select $1\0\0\0";
	struct pstmt *a = pstmt_get(k1, sizeof(k1) - 1), *b = pstmt_get(k2, sizeof(k2) - 1);

	cr_assert_neq(a, b);
	pstmt_put(a);
	pstmt_put(b);
}

/* ---- registry ---- */

Test(preg, add_find_delete_clear)
{
	struct preg r = { 0 };
	uint32_t live = pstmt_live_count();
	struct pstmt *st = stmt("select 'r'");
	char name[32];

	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		cr_assert_eq(preg_add(&r, name, st), 0);
	}
	cr_assert_eq(preg_add(&r, "s7", st), -1, "a name in use is refused");
	cr_assert_eq(preg_find(&r, "s99"), st);
	cr_assert_null(preg_find(&r, "s100"));
	cr_assert(preg_del(&r, "s5", NULL));
	cr_assert_not(preg_del(&r, "s5", NULL));
	cr_assert_null(preg_find(&r, "s5"));
	cr_assert_eq(r.count, 99);
	cr_assert_eq(st->refs, 100);
	preg_clear(&r);
	cr_assert_eq(r.count, 0);
	cr_assert_null(preg_find(&r, "s1"));
	pstmt_put(st);
	cr_assert_eq(pstmt_live_count(), live);
	preg_free(&r);
}

Test(preg, delete_only_if_it_still_names_that_statement)
{
	struct preg r = { 0 };
	struct pstmt *a = stmt("select 'a'"), *b = stmt("select 'b'");

	cr_assert_eq(preg_add(&r, "x", a), 0);
	cr_assert_not(preg_del(&r, "x", b));
	cr_assert(preg_del(&r, "x", a));
	preg_free(&r);
	pstmt_put(a);
	pstmt_put(b);
}

/* ---- cache and LRU ---- */

Test(pcache, victim_is_the_least_recently_used_other_than_the_one_kept)
{
	struct pcache c = { 0 };
	struct pstmt *s[4];

	for (int i = 0; i < 4; i++) {
		char sql[32];
		snprintf(sql, sizeof(sql), "select %d", i);
		s[i] = stmt(sql);
		cr_assert_not_null(pcache_add(&c, s[i]));
	}
	pcache_touch(&c, pcache_find(&c, s[0]));
	cr_assert_eq(pcache_victim(&c, NULL)->st, s[1]);
	cr_assert_eq(pcache_victim(&c, s[1])->st, s[2]);
	pcache_drop(&c, s[1]);
	cr_assert_null(pcache_find(&c, s[1]));
	cr_assert_eq(c.n, 3);
	cr_assert_eq(pcache_victim(&c, NULL)->st, s[2]);
	pcache_clear(&c);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(s[i]->refs, 1);
		pstmt_put(s[i]);
	}
}

/* ---- the reply queue ---- */

Test(pq, replies_confirm_swallow_and_translate_in_order)
{
	struct pq q = { 0 };
	struct pcache c = { 0 };
	struct preg r = { 0 };
	struct pstmt *st = stmt("select 'q'");

	cr_assert_not_null(pcache_add(&c, st));
	cr_assert_eq(preg_add(&r, "mine", st), 0);
	cr_assert_eq(pq_push(&q, PQ_PARSE, NULL, NULL, 0), 0);
	cr_assert_eq(pq_push(&q, PQ_CLOSE_INJECTED, NULL, NULL, 0), 0);
	cr_assert_eq(pq_push(&q, PQ_PARSE_INJECTED, st, NULL, pcache_find(&c, st)->born), 0);
	cr_assert_eq(pq_push(&q, PQ_PARSE_FAKE, st, "mine", 0), 0);
	cr_assert_eq(pq_push(&q, PQ_BOUNDARY, NULL, NULL, 0), 0);
	cr_assert_eq(pq_pop_reply(&q, '1', &c, &r), PQ_FORWARD);
	cr_assert_eq(pq_pop_reply(&q, '1', &c, &r), PQ_DESYNC, "a ParseComplete where a CloseComplete is owed");
	cr_assert_eq(pq_pop_reply(&q, '3', &c, &r), PQ_SWALLOW);
	cr_assert_not(pcache_find(&c, st)->ready);
	cr_assert_eq(pq_pop_reply(&q, '1', &c, &r), PQ_SWALLOW);
	cr_assert(pcache_find(&c, st)->ready);
	cr_assert_eq(pq_pop_reply(&q, '3', &c, &r), PQ_AS_PARSE_COMPLETE);
	cr_assert_eq(pq_ready(&q, &c, &r), 0);
	cr_assert_eq(q.count, 0);
	cr_assert_eq(preg_find(&r, "mine"), st);
	pq_free(&q, &c);
	pcache_clear(&c);
	preg_free(&r);
	cr_assert_eq(st->refs, 1);
	pstmt_put(st);
}

Test(pq, requests_skipped_after_an_error_are_undone_at_ready)
{
	struct pq q = { 0 };
	struct pcache c = { 0 };
	struct preg r = { 0 };
	struct pstmt *a = stmt("select 'a'"), *b = stmt("select 'b'"), *k = stmt("select 'k'");

	/* batch 1: Parse a (ok), Parse b (fails or skipped), Close of k (skipped) */
	cr_assert_eq(preg_add(&r, "a", a), 0);
	cr_assert_not_null(pcache_add(&c, a));
	cr_assert_eq(pq_push(&q, PQ_PARSE_NAMED, a, "a", pcache_find(&c, a)->born), 0);
	cr_assert_eq(preg_add(&r, "b", b), 0);
	cr_assert_not_null(pcache_add(&c, b));
	cr_assert_eq(pq_push(&q, PQ_PARSE_NAMED, b, "b", pcache_find(&c, b)->born), 0);
	cr_assert_eq(pq_push(&q, PQ_CLOSE, k, "k", 0), 0);      /* "k" already left the registry when the Close was sent */
	cr_assert_eq(pq_push(&q, PQ_BOUNDARY, NULL, NULL, 0), 0);
	/* batch 2: Parse k again, not yet answered */
	cr_assert_eq(pq_push(&q, PQ_PARSE, NULL, NULL, 0), 0);
	cr_assert_eq(pq_push(&q, PQ_BOUNDARY, NULL, NULL, 0), 0);

	cr_assert_eq(pq_pop_reply(&q, '1', &c, &r), PQ_FORWARD);
	cr_assert_eq(pq_ready(&q, &c, &r), 0);               /* the error's ReadyForQuery */
	cr_assert(pcache_find(&c, a)->ready);
	cr_assert_eq(preg_find(&r, "a"), a);
	cr_assert_null(pcache_find(&c, b), "a failed Parse leaves no cache entry");
	cr_assert_null(preg_find(&r, "b"), "nor a name");
	cr_assert_eq(preg_find(&r, "k"), k, "a skipped Close leaves the name in place");
	cr_assert_eq(q.count, 2, "the next batch is untouched");
	pq_free(&q, &c);
	pcache_clear(&c);
	preg_free(&r);
	pstmt_put(a);
	pstmt_put(b);
	pstmt_put(k);
}

/* Out of memory putting back a skipped Close's name: said (the relay then ends the lease), the batch still gone. */
Test(pq, a_name_that_cannot_be_given_back_is_reported)
{
#if !ALLOC_FAIL_AVAILABLE
	cr_skip_test("allocation failures are injected by interposing malloc, which AddressSanitizer owns");
#else
	struct pq q = { 0 };
	struct pcache c = { 0 };
	struct preg r = { 0 };
	struct pstmt *k = stmt("select 'k'");

	cr_assert_eq(pq_push(&q, PQ_CLOSE, k, "k", 0), 0);
	cr_assert_eq(pq_push(&q, PQ_BOUNDARY, NULL, NULL, 0), 0);
	alloc_fail_arm(1);
	int rc = pq_ready(&q, &c, &r);
	alloc_fail_disarm();
	cr_assert_eq(rc, -1);
	cr_assert_null(preg_find(&r, "k"));
	cr_assert_eq(q.count, 0, "the batch is released all the same");
	pq_free(&q, &c);
	preg_free(&r);
	pstmt_put(k);
#endif
}

Test(pq, a_parse_confirms_only_the_entry_it_was_sent_for)
{
	struct pq q = { 0 };
	struct pcache c = { 0 };
	struct pstmt *st = stmt("select 'readd'");

	/* Parse X; X evicted (its Close runs); X re-added, its Parse skipped after an error */
	cr_assert_eq(pq_push(&q, PQ_PARSE_INJECTED, st, NULL, pcache_add(&c, st)->born), 0);
	pcache_drop(&c, st);
	cr_assert_eq(pq_push(&q, PQ_PARSE_INJECTED, st, NULL, pcache_add(&c, st)->born), 0);
	cr_assert_eq(pq_push(&q, PQ_BOUNDARY, NULL, NULL, 0), 0);
	cr_assert_eq(pq_pop_reply(&q, '1', &c, NULL), PQ_SWALLOW);
	cr_assert_not(pcache_find(&c, st)->ready, "the first ParseComplete is not the re-added entry's");
	cr_assert_eq(pq_ready(&q, &c, NULL), 0);
	cr_assert_null(pcache_find(&c, st), "the skipped re-Parse leaves no entry");
	pq_free(&q, &c);
	pcache_clear(&c);
	cr_assert_eq(st->refs, 1);
	pstmt_put(st);
}

Test(pq, skipped_requests_are_undone_newest_first)
{
	struct pq q = { 0 };
	struct pcache c = { 0 };
	struct preg r = { 0 };
	struct pstmt *st = stmt("select 'lifo'");

	/* Parse a, then Close a, both skipped: a must not exist afterwards */
	cr_assert_eq(preg_add(&r, "a", st), 0);
	cr_assert_eq(pq_push(&q, PQ_PARSE_NAMED, st, "a", 0), 0);
	preg_del(&r, "a", NULL);
	cr_assert_eq(pq_push(&q, PQ_CLOSE, st, "a", 0), 0);
	cr_assert_eq(pq_push(&q, PQ_BOUNDARY, NULL, NULL, 0), 0);
	cr_assert_eq(pq_ready(&q, &c, &r), 0);
	cr_assert_null(preg_find(&r, "a"));
	cr_assert_eq(q.count, 0);
	pq_free(&q, &c);
	preg_free(&r);
	cr_assert_eq(st->refs, 1);
	pstmt_put(st);
}

Test(pq, a_deallocate_parse_that_fails_gives_the_name_back)
{
	struct pq q = { 0 };
	struct pcache c = { 0 };
	struct preg r = { 0 };
	struct pstmt *st = stmt("select 'kept'");

	/* batch 1: Parse "DEALLOCATE d" refused (aborted transaction); batch 2: it succeeds */
	for (int batch = 0; batch < 2; batch++) {
		cr_assert_eq(preg_add(&r, "d", st), 0);
		cr_assert_eq(pq_push(&q, PQ_PARSE_DEALLOCATE, st, "d", 0), 0);
		preg_del(&r, "d", NULL);
		cr_assert_eq(pq_push(&q, PQ_BOUNDARY, NULL, NULL, 0), 0);
		if (batch == 1)
			cr_assert_eq(pq_pop_reply(&q, '1', &c, &r), PQ_FORWARD);
		cr_assert_eq(pq_ready(&q, &c, &r), 0);
		if (batch == 0)
			cr_assert_eq(preg_find(&r, "d"), st, "a failed DEALLOCATE leaves the name");
		else
			cr_assert_null(preg_find(&r, "d"), "a DEALLOCATE that ran takes it");
		preg_del(&r, "d", NULL);
	}
	cr_assert_eq(q.count, 0);
	pq_free(&q, &c);
	preg_free(&r);
	cr_assert_eq(st->refs, 1);
	pstmt_put(st);
}

Test(pq, syncs_ignored_by_copy_in_are_taken_back)
{
	struct pq q = { 0 };
	struct pcache c = { 0 };

	cr_assert_eq(pq_push(&q, PQ_PARSE, NULL, NULL, 0), 0);
	cr_assert_eq(pq_push(&q, PQ_BOUNDARY, NULL, NULL, 0), 0);
	cr_assert_eq(pq_push(&q, PQ_CLOSE, NULL, NULL, 0), 0);
	cr_assert_eq(pq_push(&q, PQ_BOUNDARY, NULL, NULL, 0), 0);
	pq_tail_syncs_drop(&q, 1);
	cr_assert_eq(q.count, 3);
	cr_assert_eq(pq_pop_reply(&q, '1', &c, NULL), PQ_FORWARD);
	cr_assert_eq(pq_ready(&q, &c, NULL), 0);
	cr_assert_eq(q.count, 1);
	cr_assert_eq(pq_pop_reply(&q, '3', &c, NULL), PQ_FORWARD);
	pq_free(&q, &c);
}

Test(pq, a_lease_that_ends_early_forgets_unconfirmed_statements)
{
	struct pq q = { 0 };
	struct pcache c = { 0 };
	struct pstmt *st = stmt("select 'early'");

	cr_assert_not_null(pcache_add(&c, st));
	cr_assert_eq(pq_push(&q, PQ_PARSE_INJECTED, st, NULL, 0), 0);
	for (int i = 0; i < 40; i++)         /* grows the ring */
		cr_assert_eq(pq_push(&q, PQ_BOUNDARY, NULL, NULL, 0), 0);
	pq_clear(&q, &c);
	cr_assert_eq(q.count, 0);
	cr_assert_null(pcache_find(&c, st));
	pq_free(&q, &c);
	cr_assert_eq(st->refs, 1);
	pstmt_put(st);
	pcache_clear(&c);
}

Test(pq, a_parse_from_an_earlier_segment_is_not_counted_on)
{
	struct pq q = { 0 };
	struct pcache c = { 0 };
	struct pstmt *st = stmt("select 'seg'");
	struct pcache_entry *e = pcache_add(&c, st);

	cr_assert_eq(pq_push(&q, PQ_CLOSE_INJECTED, st, NULL, e->born), 0);
	cr_assert_eq(pq_push_parse(&q, PQ_PARSE_INJECTED, e, NULL), 0);
	cr_assert(pcache_usable(e, &q), "a Parse in the same segment: skipped, it takes the message with it");
	cr_assert_eq(pq_push(&q, PQ_BOUNDARY, NULL, NULL, 0), 0);
	cr_assert_not(pcache_usable(e, &q), "the next segment may run while that Parse was skipped");
	cr_assert_eq(pq_push_close(&q, e), 0);
	cr_assert_eq(pq_push_parse(&q, PQ_PARSE_INJECTED, e, NULL), 0);
	cr_assert(pcache_usable(e, &q));
	cr_assert_eq(pq_push(&q, PQ_BOUNDARY, NULL, NULL, 0), 0);

	cr_assert_eq(pq_ready(&q, &c, NULL), 0);                  /* segment 1 skipped after an error */
	e = pcache_find(&c, st);
	cr_assert_not_null(e, "kept while segment 2's Parse for it is in flight");
	cr_assert_not(e->ready);
	cr_assert_eq(pq_pop_reply(&q, '3', &c, NULL), PQ_SWALLOW);
	cr_assert_eq(pq_pop_reply(&q, '1', &c, NULL), PQ_SWALLOW);
	cr_assert(pcache_find(&c, st)->ready);
	cr_assert_eq(pq_ready(&q, &c, NULL), 0);
	cr_assert(pcache_find(&c, st)->ready);
	pq_free(&q, &c);
	pcache_clear(&c);
	cr_assert_eq(st->refs, 1);
	pstmt_put(st);
}

Test(pq, parses_skipped_in_every_segment_leave_no_entry)
{
	struct pq q = { 0 };
	struct pcache c = { 0 };
	struct pstmt *st = stmt("select 'both'");
	struct pcache_entry *e = pcache_add(&c, st);

	for (int seg = 0; seg < 2; seg++) {
		cr_assert_eq(pq_push_close(&q, e), 0);
		cr_assert_eq(pq_push_parse(&q, PQ_PARSE_INJECTED, e, NULL), 0);
		cr_assert_eq(pq_push(&q, PQ_BOUNDARY, NULL, NULL, 0), 0);
	}
	cr_assert_eq(pq_ready(&q, &c, NULL), 0);
	cr_assert_not_null(pcache_find(&c, st));
	cr_assert_eq(pq_ready(&q, &c, NULL), 0);
	cr_assert_null(pcache_find(&c, st));
	pq_free(&q, &c);
	pcache_clear(&c);
	cr_assert_eq(st->refs, 1);
	pstmt_put(st);
}

Test(pq, a_close_before_a_parse_that_fails_leaves_the_statement_gone)
{
	struct pq q = { 0 };
	struct pcache c = { 0 };
	struct pstmt *st = stmt("select 'gone'");
	struct pcache_entry *e = pcache_add(&c, st);

	/* segment 1's Parse ran; segment 2's Close ran, its Parse failed */
	for (int seg = 0; seg < 2; seg++) {
		cr_assert_eq(pq_push_close(&q, e), 0);
		cr_assert_eq(pq_push_parse(&q, PQ_PARSE_INJECTED, e, NULL), 0);
		cr_assert_eq(pq_push(&q, PQ_BOUNDARY, NULL, NULL, 0), 0);
	}
	pq_pop_reply(&q, '3', &c, NULL);
	pq_pop_reply(&q, '1', &c, NULL);
	cr_assert_eq(pq_ready(&q, &c, NULL), 0);
	cr_assert(pcache_find(&c, st)->ready);
	pq_pop_reply(&q, '3', &c, NULL);
	cr_assert_not(pcache_find(&c, st)->ready, "the Close ran: gone until its Parse's reply");
	cr_assert_eq(pq_ready(&q, &c, NULL), 0);
	cr_assert_null(pcache_find(&c, st));
	pq_free(&q, &c);
	pcache_clear(&c);
	pstmt_put(st);
}

Test(pq, names_with_requests_in_earlier_segments_are_unsettled)
{
	struct pq q = { 0 };
	struct pcache c = { 0 };
	struct preg r = { 0 };
	struct pstmt *st = stmt("select 'named'");

	cr_assert_eq(preg_add(&r, "a", st), 0);
	cr_assert_eq(pq_push(&q, PQ_PARSE_FAKE, st, "a", 0), 0);
	cr_assert_not(pq_name_unsettled(&q, "a"), "the same segment counts on it");
	cr_assert_eq(pq_push(&q, PQ_BOUNDARY, NULL, NULL, 0), 0);
	cr_assert_eq(pq_push(&q, PQ_CLOSE, st, "b", 0), 0);
	cr_assert(pq_name_unsettled(&q, "a"));
	cr_assert_not(pq_name_unsettled(&q, "b"));
	cr_assert_eq(pq_push(&q, PQ_BOUNDARY, NULL, NULL, 0), 0);
	cr_assert_eq(pq_push(&q, PQ_BOUNDARY, NULL, NULL, 0), 0);
	cr_assert(pq_name_unsettled(&q, "b"));
	cr_assert_eq(pq_pop_reply(&q, '3', &c, &r), PQ_AS_PARSE_COMPLETE);
	cr_assert_not(pq_name_unsettled(&q, "a"), "answered");
	cr_assert_eq(pq_ready(&q, &c, &r), 0);
	cr_assert(pq_name_unsettled(&q, "b"));
	/* COPY FROM STDIN ignored the two Syncs after the Close: its segment is open again */
	pq_tail_syncs_drop(&q, 2);
	cr_assert_not(pq_name_unsettled(&q, "b"));
	cr_assert_eq(q.named_open, 1);
	cr_assert_eq(pq_push(&q, PQ_BOUNDARY, NULL, NULL, 0), 0);
	cr_assert_eq(q.segments, 4);
	cr_assert_eq(q.answered, 3, "one answered, two ignored");
	pq_clear(&q, &c);
	cr_assert_eq(q.named_open + q.named_closed, 0);
	cr_assert_eq(q.answered, q.segments, "a lease's end leaves nothing to wait for");
	pq_free(&q, &c);
	preg_free(&r);
	cr_assert_eq(st->refs, 1);
	pstmt_put(st);
}

Test(pq, a_lease_that_ends_early_forgets_statements_with_requests_in_flight)
{
	struct pq q = { 0 };
	struct pcache c = { 0 };
	struct pstmt *st = stmt("select 'in flight'");
	struct pcache_entry *e = pcache_add(&c, st);

	e->ready = true;
	cr_assert_eq(pq_push_close(&q, e), 0);           /* a second Close + Parse, sent while the first was unanswered */
	cr_assert_eq(pq_push_parse(&q, PQ_PARSE_INJECTED, e, NULL), 0);
	pq_clear(&q, &c);
	cr_assert_null(pcache_find(&c, st), "its Close may have run without its Parse");
	pq_free(&q, &c);
	pstmt_put(st);
}
