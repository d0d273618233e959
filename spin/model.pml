/* libcancel: register / cancel / unregister, as src/registration.c does it.
 *
 * One source, two registrations R0 and R1, three threads:
 *
 *   Canceller   cancel: CAS reason 0 -> 1 *before* the lock, then drain:
 *               take the head under the stripe lock, mark it FIRED, point
 *               the call record at it, unlock, call fn, lock, clear the
 *               record, bump the epoch and wake if an unregister waits.
 *   Registrar0  register R0, then (chosen by init) unregister it blocking,
 *               unregister it without waiting, or leave it alone.
 *   Registrar1  the same for R1.
 *
 * Each callback (chosen by init) does nothing, unregisters itself, or
 * unregisters the other registration (only one its owner leaves alone, and
 * only once its register returned: the API gives one thread at a time per
 * registration).  A callback runs on the canceller, or inline on its
 * registrar when the register comes after the cancel.
 *
 * What is checked (assertions; invalid end states; the LTL claims below):
 *   - a callback runs at most once;
 *   - it never runs after cancel_unregister returned true, and true means
 *     it was never committed to run;
 *   - false means it was committed (ran, runs, or is about to);
 *   - a blocking unregister outside the callback never returns while the
 *     callback runs: it returns after the callback completed;
 *   - unregister from inside the callback returns false at once and does
 *     not deadlock (no invalid end state; and with weak fairness every run
 *     terminates);
 *   - once canceled, every registration not removed ran exactly once, the
 *     list is empty and no call record is left.
 *
 * Granularity: a critical section under the stripe lock is one atomic
 * step (every access to the guarded fields is under the lock except the
 * lock-free reads of `word` by unregister and of `reason` by register,
 * which are separate steps here).  Memory is sequentially consistent: the
 * model checks the protocol, not the C11 orderings (docs/design.md §5
 * argues those).
 */

#define NREG 2
#define NONE 255

/* Reachability probes: spin -DPROBE=<n> makes REACH(n) fail, so that
 * spin/run.sh can show that each interesting path is taken (a check that
 * passes because its path is never reached would prove nothing). */
#ifdef PROBE
#define REACH(n) assert(PROBE != n)
#else
#define REACH(n) skip
#endif
#define P_SLEEP 1       /* a blocking unregister sleeps on the epoch */
#define P_WAKE 2        /* the canceller wakes it after fn returned */
#define P_REMOVED 3     /* an unregister removes a pending registration */
#define P_INLINE 4      /* register runs fn inline (canceled under lock) */
#define P_RETRY 5       /* unregister sees word change before its lock */
#define P_CB_REMOVES 6  /* a callback removes the other registration */
#define P_SELF 7        /* a callback unregisters itself on the canceller */
#define P_WAITED_OUT 8  /* blocking unregister returns after waiting */
#define P_LOST_RACE 9   /* register sees reason 0, then canceled under lock */

/* reg->word, for the one source of the model */
#define INERT 0
#define PENDING 1
#define FIRED 2

/* what a callback does */
#define ACT_NOTHING 0
#define ACT_SELF 1  /* cancel_unregister(its own registration) */
#define ACT_OTHER 2 /* cancel_unregister(the other registration) */

/* what a registrar does after registering */
#define MODE_WAIT 0   /* cancel_unregister */
#define MODE_NOWAIT 1 /* cancel_unregister_nowait */
#define MODE_LEAVE 2  /* nothing: a callback may unregister it */

/* ---- the library's state ---- */
bit lk;                 /* the stripe lock */
byte epoch;             /* the stripe's futex word */
bool sleeping[4];       /* threads asleep in futex_wait on epoch, by _pid */
bit reason;             /* 0 open, 1 canceled */
byte word[NREG];
byte list[NREG];        /* pending registrations, newest first */
byte nlist;
bool rec_linked;        /* the canceller's call record, in the stripe */
byte rec_reg = NONE;
byte rec_owner;
bool rec_waited;

/* ---- the scenario, chosen by init ---- */
byte act[NREG];
byte mode[NREG];

/* ---- observations ---- */
byte ran[NREG];         /* how many times fn was entered */
bool running[NREG];
byte runner[NREG];      /* the _pid fn runs on */
bool committed[NREG];   /* the library decided to call fn */
bool removed[NREG];     /* an unregister returned true */
bool reg_done[NREG];    /* its register call returned */
bool all_done;
byte finished;          /* threads that returned */

hidden byte li;         /* scratch for the list helpers */

inline lock()
{
    atomic { lk == 0 -> lk = 1 }
}

inline unlock()
{
    lk = 0
}

inline list_push(pr)
{
    li = nlist;
    do
    :: li > 0 -> list[li] = list[li - 1]; li--
    :: else -> break
    od;
    list[0] = pr;
    nlist++
}

inline list_remove(rr)
{
    li = 0;
    do
    :: li < nlist && list[li] != rr -> li++
    :: else -> break
    od;
    assert(li < nlist);
    do
    :: li + 1 < nlist -> list[li] = list[li + 1]; li++
    :: else -> break
    od;
    nlist--;
    list[nlist] = NONE
}

/* futex(2): the check of the value and going to sleep are one step. */
inline futex_wait(fval)
{
    atomic {
        if
        :: epoch != fval -> skip
        :: else -> sleeping[_pid] = true; REACH(P_SLEEP)
        fi
    };
    !sleeping[_pid]
}

inline futex_wake()
{
    if
    :: sleeping[1] || sleeping[2] || sleeping[3] -> REACH(P_WAKE)
    :: else -> skip
    fi;
    d_step {
        sleeping[0] = false; sleeping[1] = false;
        sleeping[2] = false; sleeping[3] = false
    }
}

/* do_unregister(reg, wait); the result in u_res. */
inline unregister(ur, uwait)
{
    u_w = word[ur];      /* relaxed load, no lock */
    u_fin = false;
    u_waited = false;
    do
    :: u_fin -> break
    :: !u_fin && u_w == INERT -> u_res = false; u_fin = true
    :: !u_fin && u_w != INERT ->
        lock();
        if
        :: word[ur] != u_w ->
            /* fired or dropped between the look and the lock */
            atomic { u_w = word[ur]; unlock(); REACH(P_RETRY) }
        :: word[ur] == u_w && u_w == PENDING ->
            atomic {
                list_remove(ur);
                word[ur] = INERT;
                unlock();
                u_res = true; u_fin = true
            }
        :: word[ur] == u_w && u_w == FIRED ->
            do
            :: !rec_linked || rec_reg != ur || !uwait || rec_owner == _pid ->
                /* finished; or no waiting; or inside fn itself */
                atomic { unlock(); u_res = false; u_fin = true };
                break
            :: else ->
                atomic {
                    rec_waited = true; u_e = epoch; unlock(); u_waited = true
                };
                futex_wait(u_e);
                lock()
            od
        fi
    od
}

/* What an unregister's result must mean (r: the registration, outside its
 * own fn). */
inline check_unregister(cr, cwait)
{
    atomic {
        if
        :: u_res ->
            assert(!committed[cr] && ran[cr] == 0);
            removed[cr] = true;
            REACH(P_REMOVED);
            if
            :: running[0] || running[1] -> REACH(P_CB_REMOVES)
            :: else -> skip
            fi
        :: else ->
            assert(committed[cr] || removed[cr]);
            if
            :: cwait && runner[cr] != _pid ->
                /* semantic 3: it ran to completion before we returned */
                assert(!running[cr] && (ran[cr] == 1 || removed[cr]));
                if
                :: u_waited -> REACH(P_WAITED_OUT)
                :: else -> skip
                fi
            :: else -> skip
            fi
        fi
    }
}

inline callback(cbr)
{
    atomic {
        assert(ran[cbr] == 0);    /* at most once */
        assert(!removed[cbr]);    /* never after unregister returned true */
        assert(committed[cbr]);
        ran[cbr] = 1; running[cbr] = true; runner[cbr] = _pid
    };
    if
    :: act[cbr] == ACT_SELF ->
        unregister(cbr, true);
        assert(!u_res);         /* from inside fn: false, at once */
        if
        :: _pid == 1 -> REACH(P_SELF)
        :: else -> skip
        fi
    :: act[cbr] == ACT_OTHER && reg_done[1 - cbr] && mode[1 - cbr] == MODE_LEAVE ->
        unregister(1 - cbr, true);
        check_unregister(1 - cbr, true)
    :: else -> skip
    fi;
    atomic { running[cbr] = false; runner[cbr] = NONE }
}

/* do_register(t, reg, fn, arg, RUN_INLINE) */
inline do_register(dr)
{
    if
    :: reason == 0 ->   /* acquire load, no lock */
        lock();
        if
        :: reason == 0 ->
            atomic {
                list_push(dr);
                word[dr] = PENDING;
                unlock()
            }
        :: else ->
            unlock();
            atomic { word[dr] = INERT; committed[dr] = true; REACH(P_LOST_RACE) };
            callback(dr)
        fi
    :: else ->
        atomic { word[dr] = INERT; committed[dr] = true; REACH(P_INLINE) };
        callback(dr)
    fi;
    reg_done[dr] = true
}

proctype Registrar(byte r)
{
    byte u_w, u_e;
    bool u_res, u_fin, u_waited;

    do_register(r);
    if
    :: mode[r] == MODE_WAIT ->
        unregister(r, true);
        check_unregister(r, true)
    :: mode[r] == MODE_NOWAIT ->
        unregister(r, false);
        check_unregister(r, false)
    :: mode[r] == MODE_LEAVE -> skip
    fi;
    finished++
}

proctype Canceller()
{
    byte u_w, u_e;
    bool u_res, u_fin, u_waited;
    byte r;
    bool won, wake;

    /* cancel__set_canceled: the seq_cst CAS, before any lock */
    atomic {
        if
        :: reason == 0 -> reason = 1; won = true
        :: else -> won = false
        fi
    };
    if
    :: !won -> goto done
    :: else -> skip
    fi;

    /* cancel__notify */
    lock();
    if
    :: nlist == 0 -> unlock(); goto done
    :: else -> skip
    fi;
    atomic {
        rec_linked = true; rec_owner = _pid; rec_reg = NONE;
        rec_waited = false
    };
    do
    :: nlist == 0 -> break
    :: nlist > 0 ->
        atomic {
            r = list[0];
            list_remove(r);
            word[r] = FIRED;
            committed[r] = true;
            rec_reg = r;
            unlock()
        };
        if
        :: wake -> futex_wake(); wake = false
        :: else -> skip
        fi;
        callback(r);
        lock();
        /* finish_call */
        atomic {
            rec_reg = NONE;
            if
            :: rec_waited -> rec_waited = false; epoch++; wake = true
            :: else -> skip
            fi
        }
    od;
    atomic { rec_linked = false; unlock() };
    if
    :: wake -> futex_wake()
    :: else -> skip
    fi;
done:
    finished++
}

init
{
    byte r;
    atomic {
        list[0] = NONE; list[1] = NONE;
        runner[0] = NONE; runner[1] = NONE;
        if
        :: act[0] = ACT_NOTHING
        :: act[0] = ACT_SELF
        :: act[0] = ACT_OTHER
        fi;
        if
        :: act[1] = ACT_NOTHING
        :: act[1] = ACT_SELF
        :: act[1] = ACT_OTHER
        fi;
        if
        :: mode[0] = MODE_WAIT
        :: mode[0] = MODE_NOWAIT
        :: mode[0] = MODE_LEAVE
        fi;
        if
        :: mode[1] = MODE_WAIT
        :: mode[1] = MODE_NOWAIT
        :: mode[1] = MODE_LEAVE
        fi;
        run Canceller();
        run Registrar(0);
        run Registrar(1)
    };

    /* every thread has returned (a counter: pan's _nr_pr lags behind
     * terminations and makes <> claims fail spuriously) */
    finished == 3;

    atomic {
        assert(reason == 1);
        assert(nlist == 0);
        assert(!rec_linked && lk == 0);
        r = 0;
        do
        :: r < NREG ->
            assert(ran[r] <= 1);
            assert(!(removed[r] && ran[r] > 0));
            /* canceled: every registration not removed ran exactly once */
            assert(!reg_done[r] || removed[r] || ran[r] == 1);
            assert(!running[r]);
            r++
        :: else -> break
        od;
        all_done = true
    }
}

/* The same properties as temporal claims (checked one at a time by
 * spin/run.sh: ./pan -a [-f] -N <name>). */
ltl at_most_once { [] (ran[0] <= 1 && ran[1] <= 1) }
ltl never_after_removed {
    [] ((removed[0] -> ran[0] == 0) && (removed[1] -> ran[1] == 0))
}
ltl exactly_once_unless_removed {
    [] (all_done -> ((removed[0] || ran[0] == 1) && (removed[1] || ran[1] == 1)))
}
/* No deadlock and no livelock: under weak fairness every run ends. */
ltl terminates { <> all_done }
