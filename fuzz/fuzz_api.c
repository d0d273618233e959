/* API-sequence fuzzer for the core (cancel/token.h), libFuzzer.
 *
 * The input bytes decode to a sequence of operations over a few sources,
 * retained tokens and registrations: create (plain, timeout, linked from 1-3
 * tokens), free, register / try_register / register_on, unregister (blocking
 * and not), cancel, cancel with a reason, cancel_after and advancing a
 * manual clock, cancel_async, try_reset, retain / release, running the
 * posted callbacks, bad input, and allocation failures.  A registration may
 * carry an *action*: one more operation that its callback performs (on the
 * same source or another: unregister itself or another registration,
 * cancel, register, free, reset, ...), and may free its own storage
 * (semantic 7).
 *
 * Every operation runs twice: first in a small single-threaded reference
 * model written here from the spec, which produces the expected trace —
 * each call's return value, and each callback that must run, in order
 * (LIFO, linked children nested), with the reason it must see — and then
 * against libcancel, whose trace is compared event by event as it is
 * produced.  Any divergence aborts.  After each top-level operation the
 * fuzzer also compares every live token's reason and the library's count
 * of live allocations, which says exactly when a source's state is
 * destroyed (semantic 6: by the call that drops the last reference or
 * pending registration).
 *
 * The model decides which operations are valid (a slot must hold a live
 * source, a registration must not be pending when it is registered again,
 * ...); its decisions travel in the trace, so the library run makes the
 * same ones without looking at the model.
 *
 * Threads: everything runs on the fuzzer's thread except timer and
 * cancel_async callbacks, which run on the library thread while this one
 * waits in cancel_clock_advance (which returns after them).  So the run is
 * deterministic: a timer due at once (delay 0) is only armed at the top
 * level, immediately followed by an advance of 0, or from a callback that
 * already runs on the timer thread; deadlines are made distinct, so timers
 * fire in a known order.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <poll.h>
#include <string.h>

#include "cancel/token.h"
#include "cancel/wait.h"
#include "internal.h"

enum {
    NSRC = 5,          /* source slots */
    NTOK = 3,          /* retained-token slots */
    NREG = 8,          /* registration slots */
    NTOKREF = 1 + NSRC + NTOK, /* CANCEL_NONE, a source's, a retained one */
    REG_SELF = NREG,   /* in an action: the callback's own registration */
    MAXOPS = 256,      /* top-level operations per input */
    ARENA = 1024,      /* operations including actions */
    MAXSTATES = 512,
    MAXREGS = 4096,
    MAXEV = 1 << 15,   /* events of one top-level operation */
    MAXDEPTH = 6,      /* nesting of callbacks that perform actions */
};

enum opkind {
    OP_NEW,
    OP_NEW_TIMEOUT,
    OP_NEW_LINKED,
    OP_FREE,
    OP_REGISTER,
    OP_TRY_REGISTER,
    OP_REGISTER_ON,
    OP_UNREGISTER,
    OP_UNREGISTER_NOWAIT,
    OP_CANCEL,
    OP_CANCEL_REASON,
    OP_CANCEL_AFTER,
    OP_CANCEL_ASYNC,
    OP_ADVANCE,
    OP_TRY_RESET,
    OP_RETAIN,
    OP_RELEASE,
    OP_RUN_POSTED,
    OP_BAD,
    OP_TOKEN_FD,
    OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
    "new",        "new_timeout", "new_linked",  "free",
    "register",   "try_register", "register_on", "unregister",
    "unregister_nowait", "cancel", "cancel_reason", "cancel_after",
    "cancel_async", "advance",   "try_reset",   "retain",
    "release",    "run_posted",  "bad_input",   "token_fd",
};

enum { NBAD = 20 };

struct op {
    uint8_t kind;
    uint8_t src;       /* source slot */
    uint8_t reg;       /* registration slot (REG_SELF in actions) */
    uint8_t tok;       /* retained-token slot */
    uint8_t ntok;      /* new_linked: how many tokens */
    uint8_t toks[3];   /* token references (NTOKREF values) */
    uint8_t oom;       /* 0, or 1 + the index of the allocation to fail */
    uint8_t free_self; /* the callback frees its registration */
    uint8_t how;       /* bad input: which */
    int reason;
    int64_t delay;
    const struct op *action; /* what the callback does, or NULL */
};

/* ---- decoding ----------------------------------------------------------- */

struct reader {
    const uint8_t *p;
    size_t n;
};

static uint8_t u8(struct reader *r)
{
    if (r->n == 0)
        return 0;
    r->n--;
    return *r->p++;
}

static struct op arena[ARENA];
static int narena;

static uint8_t decode_oom(struct reader *r)
{
    uint8_t b = u8(r);
    return b < 24 ? (uint8_t)(1 + (b & 1)) : 0;
}

static const struct op *decode(struct reader *r, int depth)
{
    if (r->n == 0 || narena == ARENA)
        return NULL;
    struct op *o = &arena[narena++];
    memset(o, 0, sizeof(*o));
    o->kind = u8(r) % OP_COUNT;
    uint8_t b;
    switch (o->kind) {
    case OP_NEW:
        o->src = u8(r) % NSRC;
        o->oom = decode_oom(r);
        break;
    case OP_NEW_TIMEOUT:
        o->src = u8(r) % NSRC;
        b = u8(r);
        o->delay = b < 32 ? -1 : b < 64 ? 0 : b - 64;
        o->oom = decode_oom(r);
        break;
    case OP_NEW_LINKED:
        o->src = u8(r) % NSRC;
        o->ntok = 1 + u8(r) % 3;
        for (int i = 0; i < o->ntok; i++)
            o->toks[i] = u8(r) % NTOKREF;
        o->oom = decode_oom(r);
        break;
    case OP_FREE:
    case OP_CANCEL:
    case OP_TRY_RESET:
        o->src = u8(r) % NSRC;
        break;
    case OP_REGISTER:
    case OP_TRY_REGISTER:
    case OP_REGISTER_ON:
        o->reg = u8(r) % NREG;
        o->toks[0] = u8(r) % NTOKREF;
        b = u8(r);
        o->free_self = b & 1;
        if ((b & 2) && depth < 2)
            o->action = decode(r, depth + 1);
        break;
    case OP_UNREGISTER:
    case OP_UNREGISTER_NOWAIT:
        o->reg = u8(r) % (NREG + 1);
        break;
    case OP_CANCEL_REASON:
        o->src = u8(r) % NSRC;
        b = u8(r);
        o->reason = b < 8 ? (int)b - 4 : b == 255 ? INT_MAX : b;
        break;
    case OP_CANCEL_AFTER:
        o->src = u8(r) % NSRC;
        b = u8(r);
        o->delay = b < 40 ? -1 : b - 40;
        o->oom = decode_oom(r);
        break;
    case OP_CANCEL_ASYNC:
        o->src = u8(r) % NSRC;
        o->oom = decode_oom(r);
        break;
    case OP_ADVANCE:
        o->delay = u8(r);
        break;
    case OP_RETAIN:
        o->tok = u8(r) % NTOK;
        o->toks[0] = u8(r) % NTOKREF;
        break;
    case OP_RELEASE:
        o->tok = u8(r) % NTOK;
        break;
    case OP_RUN_POSTED:
        break;
    case OP_BAD:
        o->how = u8(r) % NBAD;
        o->toks[0] = u8(r) % NTOKREF;
        break;
    case OP_TOKEN_FD:
        o->toks[0] = u8(r) % NTOKREF;
        o->oom = decode_oom(r);
        break;
    }
    return o;
}

/* ---- the trace ---------------------------------------------------------- */

enum evtype { EV_DECIDE = 1, EV_RET, EV_CB, EV_POST };

/* DECIDE: a = valid, b = parameter, c = allocation to fail (-1: none).
 * RET: a = operation, b = value.  CB / POST: a = registration id,
 * b = the reason the callback sees. */
struct event {
    int type;
    int a;
    int64_t b;
    int c;
};

static struct event expect[MAXEV];
static size_t nexpect, pos;
static int cur_op; /* index of the top-level operation, for reports */
static const struct op *cur_top;

static void dump_trace(size_t upto)
{
    static const char *const names[] = {"?", "DECIDE", "RET", "CB", "POST"};
    for (size_t i = 0; i < nexpect && i <= upto + 4; i++) {
        const struct event *e = &expect[i];
        fprintf(stderr, "  %s[%zu] %s a=%d (%s) b=%" PRId64 " c=%d\n",
                i == upto ? "->" : "  ", i, names[e->type], e->a,
                e->type == EV_RET && e->a >= 0 && e->a < OP_COUNT
                    ? op_names[e->a]
                    : "",
                e->b, e->c);
    }
}

__attribute__((noreturn)) static void diverge(const char *what, int type,
                                              int a, int64_t b)
{
    fprintf(stderr,
            "\nfuzz_api: DIVERGENCE at top-level op #%d (%s): %s\n"
            "  library produced: type=%d a=%d b=%" PRId64 "\n"
            "  expected trace (-> marks the position):\n",
            cur_op, cur_top ? op_names[cur_top->kind] : "?", what, type, a,
            b);
    dump_trace(pos);
    fflush(stderr);
    abort();
}

static void m_emit(int type, int a, int64_t b, int c)
{
    if (nexpect == MAXEV) {
        fprintf(stderr, "fuzz_api: trace overflow (fuzzer limit)\n");
        abort();
    }
    expect[nexpect++] = (struct event){type, a, b, c};
}

static void r_emit(int type, int a, int64_t b)
{
    if (pos >= nexpect)
        diverge("unexpected event (the model expected nothing more)", type,
                a, b);
    const struct event *e = &expect[pos];
    if (e->type != type || e->a != a || e->b != b)
        diverge("event differs", type, a, b);
    pos++;
}

static struct event r_decision(void)
{
    if (pos >= nexpect || expect[pos].type != EV_DECIDE)
        diverge("out of step: expected a decision", EV_DECIDE, 0, 0);
    return expect[pos++];
}

/* ---- the reference model ------------------------------------------------ */

enum { R_INERT, R_PENDING, R_FIRED };

struct mstate {
    bool alive;
    int reason;
    bool freed;
    int retains;
    int internal; /* a drain or the timer thread holds a reference */
    int head;     /* pending registrations, newest first; -1: none */
    bool ext_sep; /* a separately allocated ext */
    bool ext_inline;
    bool has_fd; /* cancel_token_fd made its wait handle */
    bool armed;
    int64_t deadline;
    int nlinks;
    int links[3]; /* registrations of a linked child on its parents */
};

struct mreg {
    int uid; /* user registrations: the id callbacks report */
    int st;  /* the state it is (or was) registered on; -1: none */
    uint8_t state;
    bool link, posted, running, queued, free_self;
    int slot;  /* user registrations */
    int child; /* links */
    int next, prev;
    int post_reason;
    const struct op *action;
};

static struct mstate ms[MAXSTATES];
static int nms;
static struct mreg mr[MAXREGS];
static int nmr, m_uid;
static int m_src[NSRC];     /* state, or -1 */
static int m_tok[NTOK];     /* state, or -1 for CANCEL_NONE */
static bool m_tok_used[NTOK];
static int m_reg[NREG];     /* registration, or -1: no storage */
static int64_t m_now;
static int m_depth;
static bool m_on_timer; /* the callbacks run on the library thread */
static int m_queue[MAXREGS];
static int m_qh, m_qt;

static void m_exec(const struct op *o, int self);

static int m_new_state(void)
{
    int st = nms++;
    memset(&ms[st], 0, sizeof(ms[st]));
    ms[st].alive = true;
    ms[st].head = -1;
    return st;
}

static int m_new_reg(void)
{
    int id = nmr++;
    memset(&mr[id], 0, sizeof(mr[id]));
    mr[id].st = -1;
    mr[id].slot = -1;
    mr[id].child = -1;
    mr[id].next = mr[id].prev = -1;
    return id;
}

static void m_push(int st, int id)
{
    mr[id].st = st;
    mr[id].state = R_PENDING;
    mr[id].prev = -1;
    mr[id].next = ms[st].head;
    if (ms[st].head >= 0)
        mr[ms[st].head].prev = id;
    ms[st].head = id;
}

static void m_unlink(int id)
{
    struct mreg *g = &mr[id];
    if (g->prev >= 0)
        mr[g->prev].next = g->next;
    else
        ms[g->st].head = g->next;
    if (g->next >= 0)
        mr[g->next].prev = g->prev;
    g->next = g->prev = -1;
}

static void m_check_destroy(int st)
{
    struct mstate *s = &ms[st];
    if (s->alive && s->freed && s->retains == 0 && s->internal == 0 &&
        s->head < 0)
        s->alive = false;
}

static bool m_unregister(int id)
{
    struct mreg *g = &mr[id];
    if (g->state != R_PENDING)
        return false; /* inert, or fired (ran, or runs on this thread) */
    m_unlink(id);
    g->state = R_INERT;
    m_check_destroy(g->st);
    return true;
}

static void m_callback(int id, int reason)
{
    struct mreg *g = &mr[id];
    g->running = true;
    m_emit(EV_CB, g->uid, reason, 0);
    if (g->action != NULL) {
        m_depth++;
        m_exec(g->action, g->slot);
        m_depth--;
    }
    g->running = false;
    if (g->free_self && m_reg[g->slot] == id)
        m_reg[g->slot] = -1;
}

static void m_post(int id)
{
    struct mreg *g = &mr[id];
    g->post_reason = ms[g->st].reason;
    g->queued = true;
    m_emit(EV_POST, g->uid, g->post_reason, 0);
    m_queue[m_qt++] = id;
}

static bool m_cancel(int st, int reason);

static void m_drain(int st)
{
    if (ms[st].head < 0)
        return;
    ms[st].internal++;
    while (ms[st].head >= 0) {
        int id = ms[st].head;
        m_unlink(id);
        struct mreg *g = &mr[id];
        if (g->posted) {
            g->state = R_INERT;
            m_post(id);
        } else if (g->link) {
            g->state = R_FIRED;
            m_cancel(g->child, ms[st].reason);
        } else {
            g->state = R_FIRED;
            m_callback(id, ms[st].reason);
        }
    }
    ms[st].internal--;
    m_check_destroy(st);
}

static bool m_cancel(int st, int reason)
{
    if (ms[st].reason != 0)
        return false;
    ms[st].reason = reason;
    m_drain(st);
    return true;
}

/* Fire every due timer, earliest first, as the library thread does. */
static void m_fire_due(void)
{
    bool was = m_on_timer;
    m_on_timer = true;
    for (;;) {
        int best = -1;
        for (int st = 0; st < nms; st++)
            if (ms[st].alive && ms[st].armed && ms[st].deadline <= m_now &&
                (best < 0 || ms[st].deadline < ms[best].deadline))
                best = st;
        if (best < 0)
            break;
        ms[best].armed = false;
        if (ms[best].reason != 0)
            continue;
        ms[best].reason = ETIMEDOUT;
        ms[best].internal++;
        m_drain(best);
        ms[best].internal--;
        m_check_destroy(best);
    }
    m_on_timer = was;
}

/* A delay >= d whose deadline no other armed timer has. */
static int64_t m_unique(int64_t d, int except)
{
    for (;;) {
        bool clash = false;
        for (int st = 0; st < nms; st++)
            if (st != except && ms[st].alive && ms[st].armed &&
                ms[st].deadline == m_now + d)
                clash = true;
        if (!clash)
            return d;
        d++;
    }
}

/* -2: not usable now; -1: CANCEL_NONE; else the state. */
static int m_tokref(uint8_t ref)
{
    if (ref == 0)
        return -1;
    if (ref <= NSRC)
        return m_src[ref - 1] >= 0 ? m_src[ref - 1] : -2;
    int t = ref - 1 - NSRC;
    return m_tok_used[t] ? m_tok[t] : -2;
}

static int fail_index(const struct op *o, int allocations)
{
    return o->oom != 0 && o->oom - 1 < allocations ? o->oom - 1 : -1;
}

static bool m_slot_free_for_register(int k)
{
    int id = m_reg[k];
    return id < 0 || (mr[id].state != R_PENDING && !mr[id].running &&
                      !mr[id].queued);
}

static void m_bad(const struct op *o, int p)
{
    int64_t v = 0;
    switch (o->how) {
    case 0: case 1: case 2: case 3: case 4: case 5:
    case 6: case 7: case 8: case 9:
        v = -EINVAL;
        break;
    case 10: case 11: case 12:
        v = 0;
        break;
    case 13: case 14:
        v = -EINVAL;
        break;
    case 15:
        v = 0;
        break;
    case 16: /* cancel_check */
        v = p >= 0 && ms[p].reason != 0 ? -ECANCELED : 0;
        break;
    case 17: /* cancel_throw */
        v = -ECANCELED;
        break;
    case 18: /* new_linked(tokens, 0) + free */
        v = 1;
        break;
    case 19: /* can_be_canceled, token_equal */
        v = (p >= 0) * 2 + 1;
        break;
    }
    m_emit(EV_RET, o->kind, v, 0);
}

static void m_exec(const struct op *o, int self)
{
    bool nested = m_depth > 0;
    if (m_depth > MAXDEPTH) {
        m_emit(EV_DECIDE, 0, 0, -1);
        return;
    }
    int st, p, k, fail;
    int64_t d;
    switch (o->kind) {
    case OP_NEW:
        if (m_src[o->src] >= 0 || nms == MAXSTATES) {
            m_emit(EV_DECIDE, 0, 0, -1);
            return;
        }
        fail = fail_index(o, 1);
        m_emit(EV_DECIDE, 1, 0, fail);
        if (fail >= 0) {
            m_emit(EV_RET, o->kind, -ENOMEM, 0);
            return;
        }
        m_src[o->src] = m_new_state();
        m_emit(EV_RET, o->kind, 1, 0);
        return;

    case OP_NEW_TIMEOUT:
        if (m_src[o->src] >= 0 || nms == MAXSTATES) {
            m_emit(EV_DECIDE, 0, 0, -1);
            return;
        }
        d = o->delay > 0 ? m_unique(o->delay, -1) : o->delay;
        fail = fail_index(o, 1 + (d > 0));
        m_emit(EV_DECIDE, 1, d, fail);
        if (fail >= 0) {
            m_emit(EV_RET, o->kind, -ENOMEM, 0);
            return;
        }
        st = m_src[o->src] = m_new_state();
        if (d == 0)
            ms[st].reason = ETIMEDOUT;
        if (d > 0) {
            ms[st].ext_sep = true;
            ms[st].armed = true;
            ms[st].deadline = m_now + d;
        }
        m_emit(EV_RET, o->kind, 1, 0);
        return;

    case OP_NEW_LINKED: {
        bool ok = m_src[o->src] < 0 && nms < MAXSTATES && nmr + 3 <= MAXREGS;
        int parents[3], n = 0;
        for (int i = 0; i < o->ntok; i++) {
            parents[i] = m_tokref(o->toks[i]);
            ok = ok && parents[i] != -2;
            n += parents[i] >= 0;
        }
        if (!ok) {
            m_emit(EV_DECIDE, 0, 0, -1);
            return;
        }
        fail = fail_index(o, 1);
        m_emit(EV_DECIDE, 1, 0, fail);
        if (fail >= 0) {
            m_emit(EV_RET, o->kind, -ENOMEM, 0);
            return;
        }
        st = m_src[o->src] = m_new_state();
        ms[st].ext_inline = n > 0;
        for (int i = 0; i < o->ntok; i++) {
            if (parents[i] < 0)
                continue;
            int par = parents[i];
            int lid = m_new_reg();
            mr[lid].link = true;
            mr[lid].child = st;
            mr[lid].st = par;
            ms[st].links[ms[st].nlinks++] = lid;
            if (ms[par].reason != 0) {
                /* Registering runs the link at once: the child is canceled
                 * with the parent's reason, and the rest are not needed. */
                mr[lid].state = R_INERT;
                m_cancel(st, ms[par].reason);
                break;
            }
            if (ms[par].freed) {
                mr[lid].state = R_INERT; /* can never fire */
                continue;
            }
            m_push(par, lid);
        }
        m_emit(EV_RET, o->kind, 1, 0);
        return;
    }

    case OP_FREE:
        if ((st = m_src[o->src]) < 0) {
            m_emit(EV_DECIDE, 0, 0, -1);
            return;
        }
        m_emit(EV_DECIDE, 1, 0, -1);
        m_src[o->src] = -1;
        ms[st].armed = false;
        for (int i = 0; i < ms[st].nlinks; i++)
            m_unregister(ms[st].links[i]);
        ms[st].freed = true;
        m_check_destroy(st);
        m_emit(EV_RET, o->kind, 0, 0);
        return;

    case OP_REGISTER:
    case OP_TRY_REGISTER:
    case OP_REGISTER_ON: {
        p = m_tokref(o->toks[0]);
        k = o->reg;
        if (p == -2 || !m_slot_free_for_register(k) || nmr == MAXREGS) {
            m_emit(EV_DECIDE, 0, 0, -1);
            return;
        }
        m_emit(EV_DECIDE, 1, 0, -1);
        int id = m_new_reg();
        struct mreg *g = &mr[id];
        g->uid = m_uid++;
        g->st = p;
        g->slot = k;
        g->posted = o->kind == OP_REGISTER_ON;
        g->action = o->action;
        g->free_self = o->free_self;
        g->state = R_INERT;
        m_reg[k] = id;
        if (p < 0) {
            m_emit(EV_RET, o->kind, 0, 0);
        } else if (ms[p].reason != 0) {
            if (o->kind != OP_TRY_REGISTER) {
                if (g->posted)
                    m_post(id);
                else
                    m_callback(id, ms[p].reason);
            }
            m_emit(EV_RET, o->kind, -ECANCELED, 0);
        } else if (ms[p].freed) {
            m_emit(EV_RET, o->kind, 0, 0);
        } else {
            m_push(p, id);
            m_emit(EV_RET, o->kind, 0, 0);
        }
        return;
    }

    case OP_UNREGISTER:
    case OP_UNREGISTER_NOWAIT:
        k = o->reg == REG_SELF ? self : o->reg;
        if (k < 0 || m_reg[k] < 0) {
            m_emit(EV_DECIDE, 0, 0, -1);
            return;
        }
        m_emit(EV_DECIDE, 1, k, -1);
        m_emit(EV_RET, o->kind, m_unregister(m_reg[k]), 0);
        return;

    case OP_CANCEL:
    case OP_CANCEL_REASON:
        if ((st = m_src[o->src]) < 0) {
            m_emit(EV_DECIDE, 0, 0, -1);
            return;
        }
        m_emit(EV_DECIDE, 1, 0, -1);
        if (o->kind == OP_CANCEL_REASON && o->reason <= 0) {
            m_emit(EV_RET, o->kind, -EINVAL, 0);
            return;
        }
        m_cancel(st, o->kind == OP_CANCEL ? ECANCELED : o->reason);
        m_emit(EV_RET, o->kind, 0, 0);
        return;

    case OP_CANCEL_AFTER:
        if ((st = m_src[o->src]) < 0) {
            m_emit(EV_DECIDE, 0, 0, -1);
            return;
        }
        d = o->delay;
        fail = -1;
        if (ms[st].reason == 0 && d >= 0) {
            /* Due at once is only deterministic where the timer thread is
             * already ours: at the top level (advance follows) or on it. */
            if (d == 0 && nested && !m_on_timer)
                d = 1;
            d = m_unique(d, st);
            fail = fail_index(o, !ms[st].ext_sep && !ms[st].ext_inline);
        }
        m_emit(EV_DECIDE, 1, d, fail);
        if (ms[st].reason != 0) {
            m_emit(EV_RET, o->kind, 0, 0);
            return;
        }
        if (d < 0) {
            ms[st].armed = false;
            m_emit(EV_RET, o->kind, 0, 0);
            return;
        }
        if (fail >= 0) {
            m_emit(EV_RET, o->kind, -ENOMEM, 0);
            return;
        }
        ms[st].ext_sep = ms[st].ext_sep || !ms[st].ext_inline;
        ms[st].armed = true;
        ms[st].deadline = m_now + d;
        if (!nested && d == 0)
            m_fire_due();
        m_emit(EV_RET, o->kind, 0, 0);
        return;

    case OP_CANCEL_ASYNC:
        if (nested || (st = m_src[o->src]) < 0) {
            m_emit(EV_DECIDE, 0, 0, -1);
            return;
        }
        fail = ms[st].reason == 0
                   ? fail_index(o, !ms[st].ext_sep && !ms[st].ext_inline)
                   : -1;
        m_emit(EV_DECIDE, 1, 0, fail);
        if (ms[st].reason != 0) {
            m_emit(EV_RET, o->kind, 0, 0);
            m_emit(EV_RET, o->kind, ms[st].reason, 0);
            return;
        }
        if (fail >= 0) {
            m_emit(EV_RET, o->kind, -ENOMEM, 0);
            m_emit(EV_RET, o->kind, 0, 0);
            return;
        }
        ms[st].ext_sep = ms[st].ext_sep || !ms[st].ext_inline;
        ms[st].reason = ECANCELED;
        ms[st].internal++; /* the queue's reference */
        m_on_timer = true;
        m_drain(st);
        m_on_timer = false;
        ms[st].internal--;
        m_check_destroy(st);
        m_fire_due();
        m_emit(EV_RET, o->kind, 0, 0);
        m_emit(EV_RET, o->kind, ECANCELED, 0);
        return;

    case OP_ADVANCE:
        if (nested) {
            m_emit(EV_DECIDE, 0, 0, -1);
            return;
        }
        m_emit(EV_DECIDE, 1, 0, -1);
        m_now += o->delay;
        m_fire_due();
        m_emit(EV_RET, o->kind, 0, 0);
        return;

    case OP_TRY_RESET:
        if ((st = m_src[o->src]) < 0) {
            m_emit(EV_DECIDE, 0, 0, -1);
            return;
        }
        m_emit(EV_DECIDE, 1, 0, -1);
        if (ms[st].reason != 0) {
            m_emit(EV_RET, o->kind, 0, 0);
            return;
        }
        ms[st].armed = false;
        for (int id = ms[st].head; id >= 0;) {
            int next = mr[id].next;
            mr[id].state = R_INERT;
            mr[id].next = mr[id].prev = -1;
            id = next;
        }
        ms[st].head = -1;
        m_emit(EV_RET, o->kind, 1, 0);
        return;

    case OP_RETAIN:
        p = m_tokref(o->toks[0]);
        if (m_tok_used[o->tok] || p == -2) {
            m_emit(EV_DECIDE, 0, 0, -1);
            return;
        }
        m_emit(EV_DECIDE, 1, 0, -1);
        m_tok_used[o->tok] = true;
        m_tok[o->tok] = p;
        if (p >= 0)
            ms[p].retains++;
        m_emit(EV_RET, o->kind, 0, 0);
        return;

    case OP_RELEASE:
        if (!m_tok_used[o->tok]) {
            m_emit(EV_DECIDE, 0, 0, -1);
            return;
        }
        m_emit(EV_DECIDE, 1, 0, -1);
        m_tok_used[o->tok] = false;
        p = m_tok[o->tok];
        if (p >= 0) {
            ms[p].retains--;
            m_check_destroy(p);
        }
        m_emit(EV_RET, o->kind, 0, 0);
        return;

    case OP_RUN_POSTED: {
        m_emit(EV_DECIDE, 1, 0, -1);
        int count = 0;
        while (m_qh != m_qt) {
            int id = m_queue[m_qh++];
            mr[id].queued = false;
            m_callback(id, mr[id].post_reason);
            count++;
        }
        m_emit(EV_RET, o->kind, count, 0);
        return;
    }

    case OP_BAD:
        p = m_tokref(o->toks[0]);
        if (p == -2) {
            m_emit(EV_DECIDE, 0, 0, -1);
            return;
        }
        m_emit(EV_DECIDE, 1, 0, -1);
        m_bad(o, p);
        return;

    case OP_TOKEN_FD:
        p = m_tokref(o->toks[0]);
        if (p == -2) {
            m_emit(EV_DECIDE, 0, 0, -1);
            return;
        }
        fail = p >= 0 ? fail_index(o, !ms[p].ext_sep && !ms[p].ext_inline)
                      : -1;
        m_emit(EV_DECIDE, 1, 0, fail);
        if (p < 0) {
            m_emit(EV_RET, o->kind, -EINVAL, 0);
        } else if (fail >= 0) {
            m_emit(EV_RET, o->kind, -ENOMEM, 0);
        } else {
            ms[p].ext_sep = ms[p].ext_sep || !ms[p].ext_inline;
            ms[p].has_fd = true;
            /* 1: a valid fd, readable iff canceled (checked later too) */
            m_emit(EV_RET, o->kind, 1 + (ms[p].reason != 0), 0);
        }
        return;
    }
}

/* ---- the library run ---------------------------------------------------- */

struct fz_reg {
    cancel_registration reg;
    int id, slot;
    cancel_token t;
    bool posted, free_self;
    int post_reason;
    const struct op *action;
};

static cancel_clock *clk;
static cancel_source *r_src[NSRC];
static cancel_token r_tok[NTOK];
static struct fz_reg *r_reg[NREG];
static int r_uid, r_depth;
static struct fz_reg *r_queue[MAXREGS];
static int r_qh, r_qt;
static int post_ctx;

static void r_exec(const struct op *o, int self);

static void fail_set(int c)
{
    if (c >= 0)
        cancel__alloc_fail_after(c);
}

static void fail_reset(int c)
{
    if (c >= 0)
        cancel__alloc_fail_after(-1);
}

__attribute__((noreturn)) static void desync(const char *what)
{
    fprintf(stderr, "fuzz_api: fuzzer bookkeeping out of step: %s\n", what);
    abort();
}

static void real_cb(void *arg)
{
    struct fz_reg *g = arg;
    int reason = g->posted ? g->post_reason : cancel_reason(g->t);
    r_emit(EV_CB, g->id, reason);
    if (g->action != NULL) {
        r_depth++;
        r_exec(g->action, g->slot);
        r_depth--;
    }
    if (g->free_self) {
        if (r_reg[g->slot] != g)
            desync("callback's slot");
        r_reg[g->slot] = NULL;
        free(g); /* semantic 7: the library must not touch it again */
    }
}

static void real_post(void *ctx, cancel_callback *fn, void *arg)
{
    struct fz_reg *g = arg;
    if (ctx != &post_ctx || fn != real_cb)
        diverge("post called with a wrong fn or ctx", EV_POST, g->id, 0);
    g->post_reason = cancel_reason(g->t);
    r_emit(EV_POST, g->id, g->post_reason);
    r_queue[r_qt++] = g;
}

static cancel_token r_tokref(uint8_t ref)
{
    if (ref == 0)
        return CANCEL_NONE;
    if (ref <= NSRC) {
        if (r_src[ref - 1] == NULL)
            desync("token of an empty source slot");
        return cancel_source_token(r_src[ref - 1]);
    }
    return r_tok[ref - 1 - NSRC];
}

static void r_dummy_cb(void *arg)
{
    (void)arg;
    diverge("a callback registered with bad input ran", EV_CB, -1, 0);
}

static int64_t r_bad(const struct op *o, cancel_token t)
{
    cancel_registration z = CANCEL_REGISTRATION_INIT;
    cancel_source *s;
    switch (o->how) {
    case 0:
        return cancel_register(t, NULL, r_dummy_cb, NULL);
    case 1:
        return cancel_register(t, &z, NULL, NULL);
    case 2:
        return cancel_try_register(t, NULL, r_dummy_cb, NULL);
    case 3:
        return cancel_try_register(t, &z, NULL, NULL);
    case 4:
        return cancel_register_on(t, &z, r_dummy_cb, NULL, NULL, NULL);
    case 5:
        return cancel_register_on(t, &z, NULL, NULL, real_post, &post_ctx);
    case 6:
        return cancel_source_cancel(NULL);
    case 7:
        return cancel_source_cancel_reason(NULL, 5);
    case 8:
        return cancel_source_cancel_after(NULL, 5);
    case 9:
        return cancel_source_cancel_async(NULL);
    case 10:
        return cancel_source_try_reset(NULL);
    case 11:
        return cancel_unregister(NULL) + cancel_unregister_nowait(NULL);
    case 12:
        return cancel_unregister(&z) + cancel_unregister_nowait(&z);
    case 13:
        errno = 0;
        s = cancel_source_new_linked(NULL, 1);
        return s != NULL ? 1 : -errno;
    case 14: {
        int a = cancel_clock_advance(clk, -1);
        int b = cancel_clock_advance(NULL, 0);
        return a == b ? a : 1000;
    }
    case 15:
        cancel_source_free(NULL);
        cancel_token_release(cancel_token_retain(CANCEL_NONE));
        return cancel_reason(CANCEL_NONE) + cancel_requested(CANCEL_NONE) +
               cancel_can_be_canceled(CANCEL_NONE) +
               !cancel_token_equal(CANCEL_NONE, CANCEL_NONE) +
               !cancel_token_equal(cancel_source_token(NULL), CANCEL_NONE);
    case 16: {
        cancel_throw(CANCEL_NONE);
        int rc = cancel_check(t);
        bool rec = cancel_token_equal(cancel_canceled_token(), t);
        /* Recorded only when canceled; left as it was otherwise. */
        if (rc == -ECANCELED ? !rec
                             : !cancel_token_equal(cancel_canceled_token(),
                                                   CANCEL_NONE))
            return 1000;
        return rc;
    }
    case 17: {
        int rc = cancel_throw(t);
        return cancel_token_equal(cancel_canceled_token(), t) ? rc : 1000;
    }
    case 18: {
        cancel_token none = CANCEL_NONE;
        s = cancel_source_new_linked(&none, 0);
        if (s == NULL)
            return -errno;
        bool plain = !cancel_requested(cancel_source_token(s));
        cancel_source_free(s);
        return plain;
    }
    case 19:
        return cancel_can_be_canceled(t) * 2 + cancel_token_equal(t, t);
    }
    return 1000;
}

/* The wait handle's state: readable (1) or not (0), without blocking. */
static int fd_readable(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    int n;
    do /* libFuzzer's SIGALRM (-timeout) may interrupt it */
        n = poll(&p, 1, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 || (p.revents & (POLLERR | POLLNVAL))) {
        fprintf(stderr, "fuzz_api: poll(%d) = %d, errno %d, revents %#x\n",
                fd, n, n < 0 ? errno : 0, (unsigned)p.revents);
        diverge("poll on the token's fd failed", EV_RET, OP_TOKEN_FD, fd);
    }
    return n == 1 && (p.revents & POLLIN);
}

static void r_exec(const struct op *o, int self)
{
    (void)self;
    struct event d = r_decision();
    if (!d.a)
        return;
    bool nested = r_depth > 0;
    cancel_source *s;
    int rc, k, e;
    switch (o->kind) {
    case OP_NEW:
    case OP_NEW_TIMEOUT:
    case OP_NEW_LINKED:
        if (r_src[o->src] != NULL)
            desync("new into a used slot");
        fail_set(d.c);
        errno = 0;
        if (o->kind == OP_NEW) {
            s = cancel_source_new();
        } else if (o->kind == OP_NEW_TIMEOUT) {
            s = cancel_source_new_timeout(d.b);
        } else {
            cancel_token toks[3];
            for (int i = 0; i < o->ntok; i++)
                toks[i] = r_tokref(o->toks[i]);
            s = cancel_source_new_linked(toks, o->ntok);
        }
        e = errno;
        fail_reset(d.c);
        r_src[o->src] = s;
        r_emit(EV_RET, o->kind, s != NULL ? 1 : -e);
        return;

    case OP_FREE:
        s = r_src[o->src];
        r_src[o->src] = NULL;
        cancel_source_free(s);
        r_emit(EV_RET, o->kind, 0);
        return;

    case OP_REGISTER:
    case OP_TRY_REGISTER:
    case OP_REGISTER_ON: {
        cancel_token t = r_tokref(o->toks[0]);
        struct fz_reg *g = r_reg[o->reg];
        if (g == NULL) {
            g = calloc(1, sizeof(*g));
            if (g == NULL)
                abort();
            r_reg[o->reg] = g;
        }
        g->id = r_uid++;
        g->slot = o->reg;
        g->t = t;
        g->posted = o->kind == OP_REGISTER_ON;
        g->free_self = o->free_self;
        g->action = o->action;
        g->post_reason = 0;
        /* g may be freed by its callback before the call returns. */
        if (o->kind == OP_REGISTER)
            rc = cancel_register(t, &g->reg, real_cb, g);
        else if (o->kind == OP_TRY_REGISTER)
            rc = cancel_try_register(t, &g->reg, real_cb, g);
        else
            rc = cancel_register_on(t, &g->reg, real_cb, g, real_post,
                                    &post_ctx);
        r_emit(EV_RET, o->kind, rc);
        return;
    }

    case OP_UNREGISTER:
    case OP_UNREGISTER_NOWAIT:
        k = (int)d.b;
        if (r_reg[k] == NULL)
            desync("unregister of an empty slot");
        rc = o->kind == OP_UNREGISTER ? cancel_unregister(&r_reg[k]->reg)
                                      : cancel_unregister_nowait(&r_reg[k]->reg);
        r_emit(EV_RET, o->kind, rc);
        return;

    case OP_CANCEL:
        rc = cancel_source_cancel(r_src[o->src]);
        r_emit(EV_RET, o->kind, rc);
        return;

    case OP_CANCEL_REASON:
        rc = cancel_source_cancel_reason(r_src[o->src], o->reason);
        r_emit(EV_RET, o->kind, rc);
        return;

    case OP_CANCEL_AFTER:
        fail_set(d.c);
        rc = cancel_source_cancel_after(r_src[o->src], d.b);
        fail_reset(d.c);
        if (!nested && d.b == 0 && cancel_clock_advance(clk, 0) != 0)
            diverge("cancel_clock_advance(0) failed", EV_RET, OP_ADVANCE, 0);
        r_emit(EV_RET, o->kind, rc);
        return;

    case OP_CANCEL_ASYNC: {
        s = r_src[o->src];
        /* Our own reference: the callbacks may free the source. */
        cancel_token t = cancel_token_retain(cancel_source_token(s));
        fail_set(d.c);
        rc = cancel_source_cancel_async(s);
        fail_reset(d.c);
        int seen = cancel_reason(t); /* canceled before the call returned */
        if (cancel_clock_advance(clk, 0) != 0)
            diverge("cancel_clock_advance(0) failed", EV_RET, OP_ADVANCE, 0);
        cancel_token_release(t);
        r_emit(EV_RET, o->kind, rc);
        r_emit(EV_RET, o->kind, seen);
        return;
    }

    case OP_ADVANCE:
        rc = cancel_clock_advance(clk, o->delay);
        r_emit(EV_RET, o->kind, rc);
        return;

    case OP_TRY_RESET:
        rc = cancel_source_try_reset(r_src[o->src]);
        r_emit(EV_RET, o->kind, rc);
        return;

    case OP_RETAIN:
        r_tok[o->tok] = cancel_token_retain(r_tokref(o->toks[0]));
        r_emit(EV_RET, o->kind, 0);
        return;

    case OP_RELEASE:
        cancel_token_release(r_tok[o->tok]);
        r_tok[o->tok] = CANCEL_NONE;
        r_emit(EV_RET, o->kind, 0);
        return;

    case OP_RUN_POSTED: {
        int count = 0;
        while (r_qh != r_qt) {
            struct fz_reg *g = r_queue[r_qh++];
            real_cb(g);
            count++;
        }
        r_emit(EV_RET, o->kind, count);
        return;
    }

    case OP_BAD:
        r_emit(EV_RET, o->kind, r_bad(o, r_tokref(o->toks[0])));
        return;

    case OP_TOKEN_FD: {
        fail_set(d.c);
        int fd = cancel_token_fd(r_tokref(o->toks[0]));
        fail_reset(d.c);
        r_emit(EV_RET, o->kind, fd < 0 ? fd : 1 + fd_readable(fd));
        return;
    }
    }
}

/* ---- driver ------------------------------------------------------------- */

static long alloc_base;

/* Open file descriptors of the process (a destroyed state closes its wait
 * handle: none may be left after the cleanup). */
static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

static int fd_base;

static long m_expected_allocs(void)
{
    long n = 0;
    for (int st = 0; st < nms; st++)
        if (ms[st].alive)
            n += 1 + ms[st].ext_sep;
    return n;
}

static void check_state(void)
{
    for (int i = 0; i < NSRC; i++) {
        if ((m_src[i] >= 0) != (r_src[i] != NULL))
            desync("source slots");
        if (m_src[i] < 0)
            continue;
        cancel_token t = cancel_source_token(r_src[i]);
        int want = ms[m_src[i]].reason;
        if (cancel_reason(t) != want || cancel_requested(t) != (want != 0) ||
            !cancel_can_be_canceled(t)) {
            fprintf(stderr,
                    "fuzz_api: source slot %d: reason %d, model %d "
                    "(after op #%d %s)\n",
                    i, cancel_reason(t), want, cur_op, op_names[cur_top->kind]);
            abort();
        }
    }
    for (int i = 0; i < NTOK; i++) {
        if (!m_tok_used[i])
            continue;
        int want = m_tok[i] >= 0 ? ms[m_tok[i]].reason : 0;
        if (cancel_reason(r_tok[i]) != want ||
            cancel_requested(r_tok[i]) != (want != 0)) {
            fprintf(stderr,
                    "fuzz_api: token slot %d: reason %d, model %d "
                    "(after op #%d %s)\n",
                    i, cancel_reason(r_tok[i]), want, cur_op,
                    op_names[cur_top->kind]);
            abort();
        }
    }
    for (int k = 0; k < NREG; k++)
        if ((m_reg[k] >= 0) != (r_reg[k] != NULL))
            desync("registration slots");
    /* A wait handle, once made, is readable exactly when canceled. */
    for (int i = 0; i < NSRC + NTOK; i++) {
        int st = i < NSRC ? m_src[i] : m_tok_used[i - NSRC] ? m_tok[i - NSRC] : -1;
        if (st < 0 || !ms[st].has_fd)
            continue;
        cancel_token t = i < NSRC ? cancel_source_token(r_src[i])
                                  : r_tok[i - NSRC];
        int fd = cancel_token_fd(t); /* exists: no allocation */
        if (fd < 0 || fd_readable(fd) != (ms[st].reason != 0)) {
            fprintf(stderr,
                    "fuzz_api: slot %d: token fd %d readable %d, reason %d "
                    "(after op #%d %s)\n",
                    i, fd, fd >= 0 ? fd_readable(fd) : -1, ms[st].reason,
                    cur_op, op_names[cur_top->kind]);
            abort();
        }
    }
    long live = cancel__alloc_live() - alloc_base;
    if (live != m_expected_allocs()) {
        fprintf(stderr,
                "fuzz_api: %ld allocations live, the model expects %ld "
                "(after op #%d %s): a state %s\n",
                live, m_expected_allocs(), cur_op, op_names[cur_top->kind],
                live > m_expected_allocs() ? "was not destroyed (leak)"
                                           : "was destroyed too early");
        abort();
    }
}

static bool trace_on; /* FUZZ_API_TRACE=1: print every operation's trace */

static void print_trace(const struct op *o, int index)
{
    static const char *const names[] = {"?", "decide", "ret", "cb", "post"};
    fprintf(stderr, "#%d %s src=%d reg=%d tok=%d toks=%d,%d,%d/%d reason=%d "
            "delay=%" PRId64 " oom=%d action=%s free_self=%d how=%d\n",
            index, op_names[o->kind], o->src, o->reg, o->tok, o->toks[0],
            o->toks[1], o->toks[2], o->ntok, o->reason, o->delay, o->oom,
            o->action ? op_names[o->action->kind] : "-", o->free_self, o->how);
    for (size_t i = 0; i < nexpect; i++)
        fprintf(stderr, "    %s %d %" PRId64 " %d\n", names[expect[i].type],
                expect[i].a, expect[i].b, expect[i].c);
}

static void run_top(const struct op *o, int index)
{
    cur_op = index;
    cur_top = o;
    nexpect = pos = 0;
    m_exec(o, -1);
    r_exec(o, -1);
    if (pos != nexpect)
        diverge("the library produced fewer events than expected", 0, 0, 0);
    if (m_depth != 0 || r_depth != 0)
        desync("depth");
    if (trace_on)
        print_trace(o, index);
    check_state();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    trace_on = getenv("FUZZ_API_TRACE") != NULL;
    clk = cancel_clock_new_manual(1000000);
    if (clk == NULL || cancel_clock_install(clk) != 0)
        abort();
    /* Start the library thread and allocate the timer heap once, so that
     * neither shows up in the per-input allocation count. */
    cancel_source *s = cancel_source_new();
    if (s == NULL || cancel_source_cancel_after(s, 1000) != 0)
        abort();
    cancel_source_free(s);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reader rd = {data, size};
    const struct op *top[MAXOPS];
    int ntop = 0;

    narena = 0;
    while (ntop < MAXOPS && (top[ntop] = decode(&rd, 0)) != NULL)
        ntop++;

    nms = nmr = m_uid = 0;
    m_depth = 0;
    m_on_timer = false;
    m_qh = m_qt = 0;
    r_uid = r_depth = 0;
    r_qh = r_qt = 0;
    for (int i = 0; i < NSRC; i++) {
        m_src[i] = -1;
        r_src[i] = NULL;
    }
    for (int i = 0; i < NTOK; i++) {
        m_tok_used[i] = false;
        r_tok[i] = CANCEL_NONE;
    }
    for (int i = 0; i < NREG; i++) {
        m_reg[i] = -1;
        r_reg[i] = NULL;
    }
    cancel__alloc_fail_after(-1);
    alloc_base = cancel__alloc_live();
    fd_base = count_fds();
    m_now = cancel_clock_now();

    for (int i = 0; i < ntop; i++)
        run_top(top[i], i);

    /* Clean up through the same machinery, so that it is checked too:
     * run what was posted, free every source (registrations left on it
     * keep its state), release the tokens, then unregister everything:
     * the last unregister of a freed source destroys it. */
    static struct op cleanup[1 + NSRC + NTOK + NREG];
    int n = 0;
    cleanup[n++] = (struct op){.kind = OP_RUN_POSTED};
    for (int i = 0; i < NSRC; i++)
        cleanup[n++] = (struct op){.kind = OP_FREE, .src = (uint8_t)i};
    for (int i = 0; i < NTOK; i++)
        cleanup[n++] = (struct op){.kind = OP_RELEASE, .tok = (uint8_t)i};
    for (int i = 0; i < NREG; i++)
        cleanup[n++] = (struct op){.kind = OP_UNREGISTER, .reg = (uint8_t)i};
    for (int i = 0; i < n; i++)
        run_top(&cleanup[i], ntop + i);

    for (int st = 0; st < nms; st++)
        if (ms[st].alive)
            desync("a model state outlived the cleanup");
    int fds = count_fds();
    if (fds != fd_base) {
        fprintf(stderr, "fuzz_api: %d file descriptors open after the "
                "cleanup, %d before: a wait handle leaked\n", fds, fd_base);
        abort();
    }
    for (int k = 0; k < NREG; k++) {
        free(r_reg[k]);
        r_reg[k] = NULL;
    }
    return 0;
}
