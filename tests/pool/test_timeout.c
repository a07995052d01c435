/*
 * test_timeout.c — Criterion tests for timeout_lease_verdict() (pool/timeout.c),
 * the pure decision table the maintenance tick applies to each lease.
 *
 * Each case starts from a lease granted at t=100, relaying, nothing owed,
 * outside a transaction, with every timeout at 10 s and server_drain_timeout
 * at 5 s, and changes what it is about.
 */
#include <criterion/criterion.h>

#include "timeout.h"

static struct timeout_input base(void)
{
	return (struct timeout_input){
		.now = 100,
		.query_timeout = 10, .idle_transaction_timeout = 10, .transaction_timeout = 10,
		.client_stall_timeout = 10, .server_drain_timeout = 5,
		.started = 100, .quiet_since = 100, .last_read = 100,
		.txstatus = 'I',
	};
}

static struct timeout_input running(ev_tstamp since)
{
	struct timeout_input in = base();

	in.owed_z = 1;
	in.request_since = in.tx_since = since;
	return in;
}

Test(timeout, nothing_due_for_a_fresh_lease)
{
	struct timeout_input in = base();

	in.now = 1000;   /* idle outside a transaction, whole messages: no lease timeout applies */
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_NONE);
}

Test(timeout, a_query_is_cancelled_once_past_query_timeout)
{
	struct timeout_input in = running(100);

	in.transaction_timeout = 0;
	in.now = 109.9;
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_NONE);
	in.now = 110;
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_CANCEL);
}

Test(timeout, a_cancel_that_did_not_take_within_server_drain_timeout_ends_the_lease)
{
	struct timeout_input in = running(100);

	in.transaction_timeout = 0;
	in.query_cancelled_at = 110;
	in.now = 114;
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_NONE, "cancelled once, not again");
	in.now = 115;
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_QUERY);
}

Test(timeout, the_clock_of_a_query_is_its_own_not_the_pipelines)
{
	struct timeout_input in = running(100);

	in.transaction_timeout = 0;
	in.now = 130;
	in.request_since = 125;   /* the previous request's ReadyForQuery came at 125 */
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_NONE);
}

Test(timeout, query_timeout_off_never_cancels)
{
	struct timeout_input in = running(100);

	in.query_timeout = in.transaction_timeout = 0;
	in.now = 10000;
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_NONE);
}

Test(timeout, waiting_for_copy_data_is_not_a_running_query)
{
	struct timeout_input in = running(100);

	in.transaction_timeout = 0;
	in.copy_in = true;
	in.copy_since = 100;
	in.last_read = 119;
	in.mid_message = true;
	in.now = 120;
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_NONE, "a COPY the client keeps feeding");
	in.now = 129;
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_STALL);
}

Test(timeout, the_stall_clock_starts_when_the_backend_asks_for_copy_data)
{
	struct timeout_input in = running(100);

	in.transaction_timeout = in.query_timeout = 0;
	in.copy_in = in.mid_message = true;
	in.last_read = 100;     /* the COPY statement itself */
	in.copy_since = 150;    /* the backend waited on a lock before asking */
	in.now = 155;
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_NONE);
	in.now = 160;
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_STALL);
}

Test(timeout, a_client_silent_mid_message_is_stalled_from_its_last_byte_or_its_lease)
{
	struct timeout_input in = base();

	in.mid_message = true;
	in.last_read = 50;      /* sent half a message before it got its lease at 100 */
	in.now = 109;
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_NONE);
	in.now = 110;
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_STALL);
	in.client_stall_timeout = 0;
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_NONE, "0 is off");
}

Test(timeout, idle_in_transaction_counts_from_the_last_reply)
{
	struct timeout_input in = base();

	in.txstatus = 'T';
	in.tx_since = 100;
	in.transaction_timeout = 0;
	in.quiet_since = 105;
	in.now = 114.9;
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_NONE);
	in.now = 115;
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_IDLE_TX);
	in.txstatus = 'E';   /* a failed transaction is still one */
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_IDLE_TX);
	in.txstatus = 'I';
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_NONE);
}

Test(timeout, a_request_in_flight_is_not_idle_in_transaction)
{
	struct timeout_input in = running(100);

	in.txstatus = 'T';
	in.transaction_timeout = in.query_timeout = 0;
	in.quiet_since = 100;
	in.now = 200;
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_NONE);
}

Test(timeout, transaction_timeout_covers_busy_and_idle_transactions)
{
	struct timeout_input in = running(100);

	in.query_timeout = 0;
	in.idle_transaction_timeout = 0;
	in.now = 110;
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_TRANSACTION, "a single long statement is a transaction");
	in.owed_z = 0;
	in.txstatus = 'T';
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_TRANSACTION);
	in.txstatus = 'I';
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_NONE, "no transaction open");
}

Test(timeout, a_stall_wins_over_the_transactions_timeouts)
{
	struct timeout_input in = base();

	in.txstatus = 'T';
	in.tx_since = in.quiet_since = in.last_read = 100;
	in.mid_message = true;
	in.now = 200;
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_STALL);
	in.mid_message = false;
	cr_assert_eq(timeout_lease_verdict(&in), TIMEOUT_TRANSACTION);
}
