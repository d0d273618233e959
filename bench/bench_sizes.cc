/* Memory per object: libcancel beside std::stop_token and GCancellable.
 *
 * "Requested" is what the code asks the allocator for, counted by the
 * malloc replacement in alloc_count.c (per object, averaged over many
 * objects).  "Heap" is glibc's own accounting, mallinfo2().uordblks, which
 * adds the allocator's per-chunk header and rounding.  Run it with
 * G_SLICE=always-malloc (run.sh does) so that GLib's slice allocator does not
 * hide its objects inside magazine blocks.
 *
 *   bench_sizes [--md FILE]   --md also writes the table, in markdown, to
 *                             FILE (run.sh puts it in report.md) */
#include <cancel/cancel.h>

#include <gio/gio.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include <malloc.h>

#include "alloc_count.h"
#include "bench_util.h"

using bench::fmt;

namespace
{

const long K = 10000; /* objects per measurement */

struct counted {
    double allocs = 0; /* per object */
    double bytes = 0;  /* requested, per object */
    double heap = 0;   /* mallinfo2 delta, per object */
};

/* Runs make() K times; the result is per object.  make() must keep what it
 * creates alive until undo() runs (uncounted). */
template <class Make, class Undo> counted measure(Make make, Undo undo)
{
    counted c;
    long a, b;
    size_t before = mallinfo2().uordblks;
    bench_count_start();
    for (long i = 0; i < K; i++)
        make(i);
    bench_count_stop(&a, &b);
    size_t after = mallinfo2().uordblks;
    undo();
    c.allocs = (double)a / K;
    c.bytes = (double)b / K;
    c.heap = ((double)after - (double)before) / K;
    return c;
}

std::string show(const counted &c)
{
    char buf[96];
    if (c.allocs == 0 && c.bytes == 0)
        return "0 B (no allocation)";
    snprintf(buf, sizeof buf, "%s B in %s alloc%s (heap %s B)",
             fmt(c.bytes).c_str(), fmt(c.allocs).c_str(),
             fmt(c.allocs) == "1.00" ? "" : "s", fmt(c.heap).c_str());
    return buf;
}

void lib_nop(void *)
{
}
void glib_nop(GCancellable *, gpointer)
{
}
void glib_cancel_child(GCancellable *, gpointer child)
{
    g_cancellable_cancel((GCancellable *)child);
}
struct std_nop {
    void operator()() const noexcept
    {
    }
};
struct std_child {
    struct forward {
        std::stop_source *s;
        void operator()() const noexcept
        {
            s->request_stop();
        }
    };
    std::stop_source ss;
    std::stop_callback<forward> cb;
    explicit std_child(const std::stop_token &parent)
        : ss(), cb(parent, forward{&ss})
    {
    }
};

gboolean never(gpointer)
{
    return G_SOURCE_CONTINUE;
}

std::string bytes(size_t n)
{
    return std::to_string(n) + " B";
}

} // namespace

int main(int argc, char **argv)
{
    const char *md_path = nullptr;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--md") && i + 1 < argc) {
            md_path = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--md FILE]\n", argv[0]);
            return 2;
        }
    }
    bench::table t;
    std::vector<std::string> missed;
    auto verdict = [&](bool ok, const char *what) {
        if (!ok)
            missed.push_back(what);
        return std::string(ok ? "PASS" : "MISS");
    };
    t.add({"object", "libcancel", "std::stop_token", "GCancellable", "target",
           "result"});

    /* Warm up every type: GLib registers its classes on first use. */
    g_object_unref(g_cancellable_new());
    cancel_source_free(cancel_source_new());
    {
        std::stop_source warm;
    }

    t.add({"token (by value)", bytes(sizeof(cancel_token)),
           bytes(sizeof(std::stop_token)), bytes(sizeof(GCancellable *)), "",
           ""});

    /* A plain source. */
    std::vector<cancel_source *> srcs((size_t)K);
    counted lib_src =
        measure([&](long i) { srcs[(size_t)i] = cancel_source_new(); },
                [&] {
                    for (auto s : srcs)
                        cancel_source_free(s);
                });
    std::vector<std::stop_source> ssrcs;
    ssrcs.reserve((size_t)K);
    counted std_src =
        measure([&](long) { ssrcs.emplace_back(); }, [&] { ssrcs.clear(); });
    std::vector<GCancellable *> gcs((size_t)K);
    counted glib_src =
        measure([&](long i) { gcs[(size_t)i] = g_cancellable_new(); },
                [&] {
                    for (auto c : gcs)
                        g_object_unref(c);
                });
    t.add({"plain source", show(lib_src), show(std_src), show(glib_src),
           "<= 64 B, 1 alloc",
           verdict(lib_src.bytes <= 64 && lib_src.allocs <= 1,
                   "plain source <= 64 B in one allocation")});

    /* A registration: caller storage, then heap per registration. */
    t.add({"registration: caller storage", bytes(sizeof(cancel_registration)),
           bytes(sizeof(std::stop_callback<std_nop>)) + " (stop_callback)",
           bytes(sizeof(gulong)) + " (handler id)", "<= 48 B",
           verdict(sizeof(cancel_registration) <= 48,
                   "sizeof(cancel_registration) <= 48")});

    cancel_source *src = cancel_source_new();
    cancel_token tok = cancel_source_token(src);
    std::vector<cancel_registration> regs((size_t)K);
    counted lib_reg = measure(
        [&](long i) {
            cancel_register(tok, &regs[(size_t)i], lib_nop, nullptr);
        },
        [&] {
            for (auto &r : regs)
                cancel_unregister(&r);
        });
    std::stop_source ss;
    std::stop_token st = ss.get_token();
    std::vector<std::optional<std::stop_callback<std_nop>>> scbs((size_t)K);
    counted std_reg =
        measure([&](long i) { scbs[(size_t)i].emplace(st, std_nop{}); },
                [&] {
                    for (auto &c : scbs)
                        c.reset();
                });
    GCancellable *gc = g_cancellable_new();
    std::vector<gulong> ids((size_t)K);
    counted glib_reg = measure(
        [&](long i) {
            ids[(size_t)i] = g_cancellable_connect(gc, G_CALLBACK(glib_nop),
                                                   nullptr, nullptr);
        },
        [&] {
            for (auto id : ids)
                g_cancellable_disconnect(gc, id);
        });
    t.add({"registration: heap per register", show(lib_reg), show(std_reg),
           show(glib_reg), "0 B",
           verdict(lib_reg.allocs == 0, "no allocation on register")});

    /* The first registration of a fresh source. */
    for (auto &s : srcs)
        s = cancel_source_new();
    counted lib_first = measure(
        [&](long i) {
            cancel_register(cancel_source_token(srcs[(size_t)i]),
                            &regs[(size_t)i], lib_nop, nullptr);
        },
        [&] {
            for (long i = 0; i < K; i++) {
                cancel_unregister(&regs[(size_t)i]);
                cancel_source_free(srcs[(size_t)i]);
            }
        });
    std::vector<std::stop_source> fresh((size_t)K);
    counted std_first = measure(
        [&](long i) {
            scbs[(size_t)i].emplace(fresh[(size_t)i].get_token(), std_nop{});
        },
        [&] {
            for (auto &c : scbs)
                c.reset();
        });
    for (auto &c : gcs)
        c = g_cancellable_new();
    counted glib_first = measure(
        [&](long i) {
            ids[(size_t)i] = g_cancellable_connect(
                gcs[(size_t)i], G_CALLBACK(glib_nop), nullptr, nullptr);
        },
        [&] {
            for (long i = 0; i < K; i++) {
                g_cancellable_disconnect(gcs[(size_t)i], ids[(size_t)i]);
                g_object_unref(gcs[(size_t)i]);
            }
        });
    t.add({"first registration on a fresh source", show(lib_first),
           show(std_first), show(glib_first), "0 B",
           verdict(lib_first.allocs == 0,
                   "no allocation on the first registration")});

    /* A linked source with one parent. */
    counted lib_linked = measure(
        [&](long i) { srcs[(size_t)i] = cancel_source_new_linked(&tok, 1); },
        [&] {
            for (auto s : srcs)
                cancel_source_free(s);
        });
    std::vector<std::optional<std_child>> kids((size_t)K);
    counted std_linked = measure([&](long i) { kids[(size_t)i].emplace(st); },
                                 [&] {
                                     for (auto &k : kids)
                                         k.reset();
                                 });
    counted glib_linked = measure(
        [&](long i) {
            gcs[(size_t)i] = g_cancellable_new();
            ids[(size_t)i] = g_cancellable_connect(
                gc, G_CALLBACK(glib_cancel_child), gcs[(size_t)i], nullptr);
        },
        [&] {
            for (long i = 0; i < K; i++) {
                g_cancellable_disconnect(gc, ids[(size_t)i]);
                g_object_unref(gcs[(size_t)i]);
            }
        });
    t.add({"linked source, 1 parent", show(lib_linked),
           show(std_linked) + " + " + bytes(sizeof(std_child)) + " caller",
           show(glib_linked), "", ""});

    /* A timer: the first cancel_after of a source allocates its entry. */
    {
        cancel_source *first = cancel_source_new();
        cancel_source_cancel_after(first, 3600 * (int64_t)1000000000);
        for (auto &s : srcs)
            s = cancel_source_new();
        counted lib_timer = measure(
            [&](long i) {
                cancel_source_cancel_after(srcs[(size_t)i],
                                           3600 * (int64_t)1000000000 + i);
            },
            [&] {
                for (auto s : srcs)
                    cancel_source_free(s);
            });
        GMainContext *ctx = g_main_context_new();
        std::vector<GSource *> gsrcs((size_t)K);
        counted glib_timer = measure(
            [&](long i) {
                GSource *s = g_timeout_source_new(3600000);
                g_source_set_callback(s, never, nullptr, nullptr);
                g_source_attach(s, ctx);
                gsrcs[(size_t)i] = s;
            },
            [&] {
                for (auto s : gsrcs) {
                    g_source_destroy(s);
                    g_source_unref(s);
                }
            });
        g_main_context_unref(ctx);
        cancel_source_free(first);
        t.add({"armed timer (first cancel_after / timeout source)",
               show(lib_timer), "n/a", show(glib_timer), "", ""});
    }

    g_object_unref(gc);
    cancel_source_free(src);

    const char *slice = getenv("G_SLICE");
    auto emit = [&](FILE *o, bool md) {
        fprintf(o,
                "\nMemory per object (averaged over %ld objects; B requested "
                "from the allocator, heap = glibc %s incl. chunk "
                "headers):\n\n",
                K, md ? "`mallinfo2()`" : "mallinfo2");
        t.print(o);
        fprintf(o, "\nGLib: %sG_SLICE=%s%s%s\n", md ? "`" : "",
                slice ? slice : "(unset)", md ? "`" : "",
                slice && strstr(slice, "always-malloc")
                    ? ""
                    : " (GLib < 2.76 then serves objects from slice "
                      "magazines: its figures are approximate)");
        for (auto &m : missed)
            fprintf(o, "%sMISSED: %s\n", md ? "\n" : "", m.c_str());
    };
    emit(stdout, false);
    if (md_path) {
        FILE *o = fopen(md_path, "w");
        if (!o) {
            fprintf(stderr, "bench_sizes: %s: %s\n", md_path, strerror(errno));
            return 1;
        }
        emit(o, true);
        if (fclose(o) != 0)
            return 1;
    }
    return 0;
}
