/*
 * stream.c — accounting for a leased backend's raw protocol stream.
 *
 * Every request that produces a ReadyForQuery (Query, FunctionCall, Sync)
 * adds one owed 'Z'; every 'Z' pays one. Extended-protocol messages sent
 * without a Sync leave the stream "unsynced": the backend will not answer
 * until a Sync comes. COPY FROM STDIN is the one place where the backend
 * ignores Syncs, so Syncs counted before the CopyInResponse of an
 * extended-protocol COPY are taken back when it arrives, and its CopyDone or
 * CopyFail leaves the stream unsynced until the client's next Sync.
 */
#include "stream.h"

void stream_reset(struct stream *st)
{
	*st = (struct stream){ .txstatus = 'I' };
}

static void on_sync(struct stream *st)
{
	if (!st->copy_in)
		st->owed_z++;
	st->unsynced = false;
	st->syncs_after_execute++;
}

enum frame_verdict stream_client_msg(struct stream *st, const struct frame_msg *m)
{
	switch (m->type) {
	case 'Q':
		st->execute_last = false;
		if (st->counts)
			st->counts->queries++;
		/* fall through */
	case 'F':
		st->owed_z++;
		return FRAME_CONTINUE;
	case 'S':
		on_sync(st);
		return FRAME_CONTINUE;
	case 'E':
		st->execute_last = true;
		if (st->counts)
			st->counts->queries++;
		st->syncs_after_execute = 0;
		/* fall through */
	case 'P': case 'B': case 'D': case 'C': case 'H':
		st->unsynced = true;
		return FRAME_CONTINUE;
	case 'd':
		return FRAME_CONTINUE;
	case 'c': case 'f':
		/* The backend ignored the Syncs sent during an extended COPY. */
		if (st->copy_in && st->copy_extended)
			st->unsynced = true;
		st->copy_in = false;
		return FRAME_CONTINUE;
	default:
		return FRAME_ERROR;
	}
}

static void on_copy_in(struct stream *st)
{
	st->copy_in = true;
	st->copy_extended = st->execute_last;
	if (!st->execute_last)
		return;
	uint32_t ignored = st->syncs_after_execute;
	st->owed_z -= ignored < st->owed_z ? ignored : st->owed_z;
	st->syncs_after_execute = 0;
}

enum frame_verdict stream_server_msg(struct stream *st, const struct frame_msg *m)
{
	switch (m->type) {
	case 'Z':
		if (!m->body || m->len != 5)
			return FRAME_ERROR;
		st->txstatus = (char)m->body[0];
		st->copy_in = false;
		if (st->counts && st->txstatus == 'I')
			st->counts->xacts++;
		if (st->owed_z)
			st->owed_z--;
		return FRAME_CONTINUE;
	case 'G': case 'W':
		on_copy_in(st);
		return FRAME_CONTINUE;
	default:
		return FRAME_CONTINUE;
	}
}

enum frame_verdict stream_server_frame_cb(void *arg, const struct frame_msg *m)
{
	return stream_server_msg(arg, m);
}

bool stream_idle(const struct stream *st)
{
	return st->owed_z == 0 && !st->unsynced && !st->copy_in &&
	       st->to_server.body_left == 0 && st->from_server.body_left == 0;
}
