#!/usr/bin/env python3
"""Write the seed corpus of fuzz_api (fuzz/corpus/*): one small input per
scenario of the spec, encoded exactly as fuzz_api.c decodes its bytes.

    python3 fuzz/make_corpus.py [dir]      (default: fuzz/corpus)

Keep the op numbers and encodings in step with decode() in fuzz_api.c.
"""
import os
import sys

(OP_NEW, OP_NEW_TIMEOUT, OP_NEW_LINKED, OP_FREE, OP_REGISTER,
 OP_TRY_REGISTER, OP_REGISTER_ON, OP_UNREGISTER, OP_UNREGISTER_NOWAIT,
 OP_CANCEL, OP_CANCEL_REASON, OP_CANCEL_AFTER, OP_CANCEL_ASYNC, OP_ADVANCE,
 OP_TRY_RESET, OP_RETAIN, OP_RELEASE, OP_RUN_POSTED, OP_BAD,
 OP_TOKEN_FD) = range(20)

NSRC = 5
SELF = 8          # REG_SELF: the callback's own registration
NONE = 0          # token references: CANCEL_NONE,


def S(i):         # ... the token of source slot i,
    return 1 + i


def T(t):         # ... or retained-token slot t
    return 1 + NSRC + t


def oom(n):       # fail the n-th allocation of the op (None: no failure)
    return 0xFF if n is None else n


def new(src, fail=None):
    return [OP_NEW, src, oom(fail)]


def new_timeout(src, delay, fail=None):
    b = 0 if delay < 0 else 32 if delay == 0 else 64 + delay
    return [OP_NEW_TIMEOUT, src, b, oom(fail)]


def new_linked(src, toks, fail=None):
    return [OP_NEW_LINKED, src, len(toks) - 1] + list(toks) + [oom(fail)]


def free(src):
    return [OP_FREE, src]


def _reg(kind, reg, tok, free_self, action):
    b = (1 if free_self else 0) | (2 if action else 0)
    return [kind, reg, tok, b] + (action or [])


def register(reg, tok, action=None, free_self=False):
    return _reg(OP_REGISTER, reg, tok, free_self, action)


def try_register(reg, tok, action=None, free_self=False):
    return _reg(OP_TRY_REGISTER, reg, tok, free_self, action)


def register_on(reg, tok, action=None, free_self=False):
    return _reg(OP_REGISTER_ON, reg, tok, free_self, action)


def unregister(reg):
    return [OP_UNREGISTER, reg]


def unregister_nowait(reg):
    return [OP_UNREGISTER_NOWAIT, reg]


def cancel(src):
    return [OP_CANCEL, src]


def cancel_reason(src, reason):
    if -4 <= reason <= 3:
        b = reason + 4
    elif reason == 2**31 - 1:
        b = 255
    else:
        assert 8 <= reason <= 254
        b = reason
    return [OP_CANCEL_REASON, src, b]


def cancel_after(src, delay, fail=None):
    return [OP_CANCEL_AFTER, src, 0 if delay < 0 else 40 + delay, oom(fail)]


def cancel_async(src, fail=None):
    return [OP_CANCEL_ASYNC, src, oom(fail)]


def advance(ns):
    return [OP_ADVANCE, ns]


def try_reset(src):
    return [OP_TRY_RESET, src]


def retain(tok, ref):
    return [OP_RETAIN, tok, ref]


def release(tok):
    return [OP_RELEASE, tok]


def run_posted():
    return [OP_RUN_POSTED]


def bad(how, tok=NONE):
    return [OP_BAD, how, tok]


def token_fd(tok, fail=None):
    return [OP_TOKEN_FD, tok, oom(fail)]


def seq(*ops):
    return bytes(b for op in ops for b in op)


SEEDS = {
    # semantic 1: LIFO
    "lifo": seq(new(0), register(0, S(0)), register(1, S(0)),
                register(2, S(0)), cancel(0)),
    "unregister_pending": seq(new(0), register(0, S(0)), register(1, S(0)),
                              unregister(0), cancel(0), unregister(1)),
    "unregister_nowait": seq(new(0), register(0, S(0)), unregister_nowait(0),
                             register(0, S(0)), cancel(0),
                             unregister_nowait(0)),
    "register_canceled": seq(new(0), cancel(0), register(0, S(0)),
                             try_register(1, S(0)), unregister(0),
                             unregister(1)),
    "register_none": seq(register(0, NONE), try_register(1, NONE),
                         register_on(2, NONE), unregister(0)),
    # semantic 2: what a callback may do
    "cb_unregister_self": seq(new(0), register(0, S(0), unregister(SELF)),
                              cancel(0)),
    "cb_unregister_next": seq(new(0), register(0, S(0)),
                              register(1, S(0), unregister(0)), cancel(0)),
    "cb_unregister_ran": seq(new(0), register(0, S(0), unregister(1)),
                             register(1, S(0)), cancel(0)),
    "cb_cancel_same": seq(new(0), register(0, S(0), cancel(0)),
                          register(1, S(0)), cancel_reason(0, 42)),
    "cb_cancel_other": seq(new(0), new(1), register(0, S(1)),
                           register(1, S(1)), register(2, S(0), cancel(1)),
                           register(3, S(0)), cancel(0)),
    "cb_register_inline": seq(new(0), register(0, S(0),
                                                register(1, S(0))),
                              cancel(0)),
    "cb_try_register": seq(new(0), new(1),
                           register(0, S(0), try_register(1, S(0))),
                           register(2, S(0), register(3, S(1))), cancel(0),
                           cancel(1)),
    "cb_free_source": seq(new(0), register(0, S(0)),
                          register(1, S(0), free(0)), register(2, S(0)),
                          cancel(0)),
    "cb_free_self_storage": seq(new(0), register(0, S(0), free_self=True),
                                register(1, S(0), unregister(SELF), True),
                                cancel(0), new(1), register(0, S(1)),
                                cancel(1)),
    "cb_try_reset_other": seq(new(0), new(1), register(0, S(1)),
                              register(1, S(0), try_reset(1)), cancel(0),
                              cancel(1)),
    "cb_retain_release": seq(new(0), register(0, S(0), retain(0, S(0))),
                             free(0), release(0)),
    "cb_chain": seq(new(0), new(1), new(2), new(3),
                    register(0, S(3)), register(1, S(2), cancel(3)),
                    register(2, S(1), cancel(2)), register(3, S(0), cancel(1)),
                    cancel(0)),
    "cb_new_linked": seq(new(0), register(0, S(0), new_linked(1, [S(0)])),
                         cancel(0), register(1, S(1))),
    # semantic 5: linked sources
    "linked_basic": seq(new(0), new(1), new_linked(2, [S(0), S(1)]),
                        register(0, S(2)), register(1, S(1)),
                        register(2, S(1)), cancel_reason(1, 77)),
    "linked_precanceled": seq(new(0), new(1), cancel_reason(1, 9),
                              new_linked(2, [S(0), S(1), S(0)]),
                              register(0, S(2)), cancel(0)),
    "linked_none_dup": seq(new(0), new_linked(1, [NONE, S(0), S(0)]),
                           new_linked(2, [NONE]), register(0, S(1)),
                           cancel(0), free(1), free(2)),
    "linked_free_child": seq(new(0), new_linked(1, [S(0)]),
                             register(0, S(1)), free(1), cancel(0)),
    "linked_free_parent": seq(new(0), new_linked(1, [S(0)]), free(0),
                              register(0, S(1)), free(1), unregister(0)),
    "linked_grandchild": seq(new(0), new_linked(1, [S(0)]),
                             new_linked(2, [S(1), S(0)]), register(0, S(2)),
                             register(1, S(1)), register(2, S(0)),
                             cancel_reason(0, 200)),
    "linked_child_frees_itself": seq(new(0), new_linked(1, [S(0)]),
                                     register(0, S(1), free(1)),
                                     register(1, S(0)), cancel(0)),
    "linked_reset_parent": seq(new(0), new_linked(1, [S(0)]), try_reset(0),
                               cancel(0), register(0, S(1)), cancel(1)),
    "linked_retained_parent": seq(new(0), retain(0, S(0)), free(0),
                                  new_linked(1, [T(0)]), release(0),
                                  register(0, S(1)), cancel(1)),
    # timers and the manual clock
    "timer_fires": seq(new(0), register(0, S(0)), cancel_after(0, 10),
                       advance(5), advance(5), register(1, S(0))),
    "timer_zero": seq(new(0), register(0, S(0)), register(1, S(0)),
                      cancel_after(0, 0)),
    "timer_rearm_disarm": seq(new(0), new(1), register(0, S(0)),
                              register(1, S(1)), cancel_after(0, 10),
                              cancel_after(1, 20), cancel_after(0, 30),
                              advance(25), cancel_after(0, -1), advance(50)),
    "timer_order": seq(new(0), new(1), new(2), register(0, S(0)),
                       register(1, S(1)), register(2, S(2)),
                       cancel_after(2, 3), cancel_after(0, 1),
                       cancel_after(1, 2), advance(10)),
    "timer_same_deadline": seq(new(0), new(1), register(0, S(0)),
                               register(1, S(1)), cancel_after(0, 5),
                               cancel_after(1, 5), advance(9)),
    "timer_cb_arms_zero": seq(new(0), new(1), register(1, S(1)),
                              register(0, S(0), cancel_after(1, 0)),
                              cancel_after(0, 4), advance(4)),
    "timer_cb_frees": seq(new(0), register(0, S(0), free(0)),
                          register(1, S(0)), cancel_after(0, 2), advance(3)),
    "timer_cancel_wins": seq(new(0), register(0, S(0)), cancel_after(0, 5),
                             cancel(0), advance(10), cancel_after(0, 1)),
    "new_timeout": seq(new_timeout(0, 0), new_timeout(1, 7),
                       new_timeout(2, -1), register(0, S(0)),
                       register(1, S(1)), advance(7), register(2, S(2))),
    "free_armed": seq(new(0), cancel_after(0, 3), register(0, S(0)), free(0),
                      advance(5), unregister(0)),
    # reset
    "reset": seq(new(0), register(0, S(0)), register(1, S(0)),
                 cancel_after(0, 4), try_reset(0), advance(5), cancel(0),
                 unregister(0), try_reset(0)),
    "reset_then_register": seq(new(0), register(0, S(0)), try_reset(0),
                               register(1, S(0)), register(2, S(0)),
                               unregister(2), cancel(0)),
    # lifetime: retained tokens, freed sources (semantic 6)
    "retain_free_register": seq(new(0), retain(0, S(0)), free(0),
                                register(0, T(0)), unregister(0),
                                release(0)),
    "retain_cancel_free": seq(new(0), retain(1, S(0)), cancel_reason(0, 12),
                              free(0), register(0, T(1)), release(1)),
    "freed_pending": seq(new(0), register(0, S(0)), register(1, S(0)),
                         free(0), unregister(1), unregister(0)),
    "retain_none": seq(retain(0, NONE), register(0, T(0)), release(0)),
    # posted registrations
    "posted": seq(new(0), register_on(0, S(0)), register(1, S(0)),
                  register_on(2, S(0)), register(3, S(0)), unregister(2),
                  cancel(0), unregister(0), run_posted(), unregister(0)),
    "posted_inline": seq(new(0), cancel(0), register_on(0, S(0), free_self=True),
                         run_posted()),
    "posted_action": seq(new(0), new(1), register(1, S(1)),
                         register_on(0, S(0), cancel(1)), cancel(0),
                         run_posted()),
    # cancel_async
    "async": seq(new(0), register(0, S(0)), register(1, S(0), free(0)),
                 cancel_async(0), cancel_async(0)),
    # reasons and bad input
    "reasons": seq(new(0), cancel_reason(0, 0), cancel_reason(0, -3),
                   cancel_reason(0, 2**31 - 1), cancel_reason(0, 50),
                   register(0, S(0))),
    "bad_input": seq(new(0), cancel(0), *[bad(h, S(0)) for h in range(20)],
                     *[bad(h, NONE) for h in range(20)]),
    # the wait handle: readable once canceled, closed with the state
    "token_fd": seq(new(0), token_fd(S(0)), register(0, S(0)), cancel(0),
                    token_fd(S(0)), new(1), cancel(1), token_fd(S(1)),
                    new_linked(2, [S(0)]), token_fd(S(2)), token_fd(NONE)),
    "token_fd_retained": seq(new(0), retain(0, S(0)), token_fd(T(0)),
                             free(0), token_fd(T(0)), release(0),
                             new(1), token_fd(S(1), 0), cancel_after(1, 3),
                             token_fd(S(1)), advance(3)),
    # allocation failures
    "oom": seq(new(0, 0), new_timeout(0, 5, 1), new_timeout(0, 5, 0),
               new_linked(0, [NONE], 0), new(0), new_linked(1, [S(0)], 0),
               cancel_after(0, 5, 0), cancel_async(0, 0), new(1),
               register(0, S(1)), cancel_async(1, 1)),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {out}")


if __name__ == "__main__":
    main()
