/* tokenkit CCID: the reader and slot objects, shared by the files of ccid/ only. */
#ifndef TK_CCID_INT_H
#define TK_CCID_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include <tokenkit/atr.h>

#include "ccid.h"
#include "t1.h"

struct tk_ccid_slot {
	tk_ccid_dev_t *dev;
	unsigned index;
	bool powered;
	int protocol; /* 0, 1; -1 when not powered */
	uint8_t atr[TK_ATR_MAX_LEN];
	size_t atr_len;
	tk_atr_t atr_info;
	tk_t1_t t1;
	int bwt_ms; /* T=1 block waiting time (T=0: work waiting time) */
};

struct tk_ccid_dev {
	libusb_context *ctx;
	libusb_device_handle *h;
	tk_ccid_found_t f;
	char name[TK_CCID_NAME_MAX];
	char product[TK_CCID_NAME_MAX]; /* "Manufacturer Product" */
	char serial[64];
	enum tk_ccid_level level;
	unsigned nslots;
	tk_ccid_slot_t slots[TK_CCID_MAX_SLOTS];
	tk_ccid_timeouts_t to;

	/* Bulk traffic, the sequence number, slot state, counters. Held across
	 * a command and its reply: the slots of a reader share its pipes. */
	pthread_mutex_t lock;
	uint8_t seq;
	uint8_t *wbuf; /* one command: dwMaxCCIDMessageLength */
	size_t wcap;
	uint8_t *rbuf; /* one reply: rounded up to whole bulk-in packets */
	size_t rcap;
	tk_ccid_stats_t st;

	/* The interrupt pipe: its own lock, so events flow while a command
	 * waits. evt_stop makes waiters give up (reopen, close). */
	pthread_mutex_t evt_lock;
	atomic_bool evt_stop;

	atomic_int fault; /* enum tk_ccid_fault of the last failure */
};

/* command.c: one command and its reply, with the reader's lock held. The
 * sequence number is assigned here (cmd->seq is overwritten). read_ms is
 * the wait for each bulk-in transfer (0: the default). The reply's data
 * points into d->rbuf until the next command. Errors: transport errors,
 * TK_ERR_COMM (garbage), TK_ERR_TIMEOUT (no reply, or time extensions
 * beyond the bounds), TK_ERR_PROTOCOL (a reply of the wrong type). The
 * reply's own status is left to the caller (tk_ccid_reply_err). */
int tk_ccid_command(tk_ccid_dev_t *d, tk_ccid_cmd_t *cmd, int read_ms, tk_ccid_reply_t *reply);
/* Read and throw away what the reader has queued on bulk-in (after a
 * CLEAR_HALT, an ABORT or garbage), bounded. */
void tk_ccid_drain(tk_ccid_dev_t *d);

/* usb.c: transfers with deadlines; they record the fault. */
int tk_ccid_bulk_out(tk_ccid_dev_t *d, const uint8_t *p, size_t len, int timeout_ms);
int tk_ccid_bulk_in(tk_ccid_dev_t *d, uint8_t *p, size_t cap, size_t *got, int timeout_ms);
void tk_ccid_set_fault(tk_ccid_dev_t *d, enum tk_ccid_fault f);
/* The ABORT class request (5.3.1) for slot and seq on the control pipe. */
int tk_ccid_abort_request(tk_ccid_dev_t *d, uint8_t slot, uint8_t seq);

/* slot.c: forget every slot's power state (after a reset or reopen). */
void tk_ccid_slots_reset(tk_ccid_dev_t *d);

#endif
