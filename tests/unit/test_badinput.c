/* Unit tests of bad input (issue #2 point 4): NULL objects, NULL callbacks,
 * zeroed and spent registrations, bad reasons, and the small value
 * functions (cancel_can_be_canceled, cancel_token_equal, the error names).
 * Bad input returns -EINVAL (or the documented no-op / false / CANCEL_NONE),
 * never crashes, and never loses state that was already there. */
#include "harness.h"

#include <errno.h>
#include <string.h>

static void count_cb(void *arg)
{
    (*(int *)arg)++;
}

static int posts;

static void count_post(void *ctx, cancel_callback *fn, void *arg)
{
    (void)ctx;
    (void)fn;
    (void)arg;
    posts++;
}

/* ---- NULL source -------------------------------------------------------- */

TEST(null_source_to_every_source_function)
{
    cancel_source_free(NULL); /* no-op */
    ASSERT_TRUE(cancel_token_equal(cancel_source_token(NULL), CANCEL_NONE));
    ASSERT_ERR(cancel_source_cancel(NULL), -EINVAL);
    ASSERT_ERR(cancel_source_cancel_reason(NULL, ECANCELED), -EINVAL);
    ASSERT_ERR(cancel_source_cancel_reason(NULL, 0), -EINVAL);
    ASSERT_ERR(cancel_source_cancel_after(NULL, 100), -EINVAL);
    ASSERT_ERR(cancel_source_cancel_after(NULL, 0), -EINVAL);
    ASSERT_ERR(cancel_source_cancel_after(NULL, -1), -EINVAL);
    ASSERT_ERR(cancel_source_cancel_async(NULL), -EINVAL);
    ASSERT_FALSE(cancel_source_try_reset(NULL));
}

TEST(source_token_of_null_is_none)
{
    cancel_token t = cancel_source_token(NULL);
    ASSERT_FALSE(cancel_can_be_canceled(t));
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_EQ(cancel_reason(t), 0);
}

/* ---- NULL registration / callback --------------------------------------- */

TEST(null_reg_or_fn_is_einval_on_live_token)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_ERR(cancel_register(t, NULL, count_cb, &runs), -EINVAL);
    ASSERT_ERR(cancel_register(t, &reg, NULL, &runs), -EINVAL);
    ASSERT_ERR(cancel_try_register(t, NULL, count_cb, &runs), -EINVAL);
    ASSERT_ERR(cancel_try_register(t, &reg, NULL, &runs), -EINVAL);
    ASSERT_ERR(cancel_register_on(t, NULL, count_cb, &runs, count_post, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_register_on(t, &reg, NULL, &runs, count_post, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_register_on(t, &reg, count_cb, &runs, NULL, NULL),
               -EINVAL);
    /* reg was not registered by any of them. */
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(runs, 0);
    ASSERT_EQ(posts, 0);
    cancel_source_free(src);
}

TEST(null_reg_or_fn_is_einval_on_canceled_token_and_fn_does_not_run)
{
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    cancel_token t = cancel_source_token(src);
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_ERR(cancel_register(t, NULL, count_cb, &runs), -EINVAL);
    ASSERT_ERR(cancel_register(t, &reg, NULL, &runs), -EINVAL);
    ASSERT_ERR(cancel_try_register(t, NULL, count_cb, &runs), -EINVAL);
    ASSERT_ERR(cancel_register_on(t, NULL, count_cb, &runs, count_post, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_register_on(t, &reg, count_cb, &runs, NULL, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_register_on(t, &reg, NULL, &runs, count_post, NULL),
               -EINVAL);
    ASSERT_EQ(runs, 0);
    ASSERT_EQ(posts, 0);
    cancel_source_free(src);
}

TEST(null_reg_or_fn_is_einval_on_none)
{
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_ERR(cancel_register(CANCEL_NONE, NULL, count_cb, &runs), -EINVAL);
    ASSERT_ERR(cancel_register(CANCEL_NONE, &reg, NULL, &runs), -EINVAL);
    ASSERT_ERR(cancel_try_register(CANCEL_NONE, NULL, count_cb, &runs),
               -EINVAL);
    ASSERT_ERR(cancel_try_register(CANCEL_NONE, &reg, NULL, &runs), -EINVAL);
    ASSERT_ERR(
        cancel_register_on(CANCEL_NONE, &reg, count_cb, &runs, NULL, NULL),
        -EINVAL);
    ASSERT_EQ(runs, 0);
}

TEST(bad_register_keeps_existing_registrations)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    int runs = 0;
    cancel_registration good = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(t, &good, count_cb, &runs));
    ASSERT_ERR(cancel_register(t, NULL, count_cb, &runs), -EINVAL);
    ASSERT_ERR(cancel_source_cancel_reason(src, -3), -EINVAL);
    ASSERT_ERR(cancel_clock_advance(NULL, 5), -EINVAL);
    ASSERT_FALSE(cancel_unregister(NULL));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(runs, 1);
    cancel_source_free(src);
}

/* ---- unregistering what is not registered ------------------------------- */

TEST(unregister_null_is_false)
{
    ASSERT_FALSE(cancel_unregister(NULL));
    ASSERT_FALSE(cancel_unregister_nowait(NULL));
}

TEST(unregister_zeroed_registration_is_false)
{
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_FALSE(cancel_unregister_nowait(&reg));
    cancel_registration zeroed;
    memset(&zeroed, 0, sizeof(zeroed));
    ASSERT_FALSE(cancel_unregister(&zeroed));
    static cancel_registration static_reg; /* zero by C's rules */
    ASSERT_FALSE(cancel_unregister(&static_reg));
}

TEST(double_unregister_second_is_false)
{
    cancel_source *src = cancel_source_new();
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, count_cb, &runs));
    ASSERT_TRUE(cancel_unregister(&reg));
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(runs, 0);
    cancel_source_free(src);
}

TEST(unregister_after_source_freed)
{
    cancel_source *src = cancel_source_new();
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, count_cb, &runs));
    cancel_source_free(src);
    ASSERT_TRUE(cancel_unregister(&reg));
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_EQ(runs, 0);
}

TEST(register_on_none_is_inert)
{
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(CANCEL_NONE, &reg, count_cb, &runs));
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_EQ(runs, 0);
}

/* ---- reasons ------------------------------------------------------------ */

TEST(reason_not_positive_is_einval)
{
    cancel_source *src = cancel_source_new();
    ASSERT_ERR(cancel_source_cancel_reason(src, 0), -EINVAL);
    ASSERT_ERR(cancel_source_cancel_reason(src, -1), -EINVAL);
    ASSERT_FALSE(cancel_requested(cancel_source_token(src)));
    cancel_source_free(src);
}

/* ---- clock -------------------------------------------------------------- */

TEST(clock_bad_input)
{
    ASSERT_ERR(cancel_clock_advance(NULL, 0), -EINVAL);
    cancel_clock_free(NULL); /* no-op */
    cancel_clock *c = cancel_clock_new_manual(0);
    ASSERT_NOT_NULL(c);
    ASSERT_ERR(cancel_clock_advance(c, -1), -EINVAL);
    cancel_clock_free(c);
}

/* ---- tokens ------------------------------------------------------------- */

TEST(can_be_canceled)
{
    ASSERT_FALSE(cancel_can_be_canceled(CANCEL_NONE));
    cancel_token zero;
    memset(&zero, 0, sizeof(zero));
    ASSERT_FALSE(cancel_can_be_canceled(zero));
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_TRUE(cancel_can_be_canceled(t));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_TRUE(cancel_can_be_canceled(t));
    cancel_source_free(src);
}

TEST(token_equal)
{
    ASSERT_TRUE(cancel_token_equal(CANCEL_NONE, CANCEL_NONE));
    cancel_token zero;
    memset(&zero, 0, sizeof(zero));
    ASSERT_TRUE(cancel_token_equal(zero, CANCEL_NONE));
    cancel_source *a = cancel_source_new();
    cancel_source *b = cancel_source_new();
    cancel_token ta = cancel_source_token(a), tb = cancel_source_token(b);
    cancel_token ta2 = ta;
    ASSERT_TRUE(cancel_token_equal(ta, ta2));
    ASSERT_TRUE(cancel_token_equal(ta, cancel_source_token(a)));
    ASSERT_FALSE(cancel_token_equal(ta, tb));
    ASSERT_FALSE(cancel_token_equal(ta, CANCEL_NONE));
    ASSERT_FALSE(cancel_token_equal(CANCEL_NONE, tb));
    cancel_source_free(a);
    cancel_source_free(b);
}

TEST(none_is_never_canceled)
{
    ASSERT_FALSE(cancel_requested(CANCEL_NONE));
    ASSERT_EQ(cancel_reason(CANCEL_NONE), 0);
    ASSERT_OK(cancel_check(CANCEL_NONE));
}

/* ---- error names -------------------------------------------------------- */

TEST(strerror_and_err_name_for_both_signs)
{
    static const struct {
        int code;
        const char *name;
    } codes[] = {
        {ECANCELED, "ECANCELED"}, {ETIMEDOUT, "ETIMEDOUT"}, {EINVAL, "EINVAL"},
        {ENOMEM, "ENOMEM"},       {EOVERFLOW, "EOVERFLOW"}, {EAGAIN, "EAGAIN"},
    };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        int c = codes[i].code;
        const char *neg = cancel_strerror(-c);
        const char *pos = cancel_strerror(c);
        ASSERT_NOT_NULL(neg);
        ASSERT_NOT_NULL(pos);
        if (strcmp(neg, pos) != 0 || strcmp(neg, "unknown error") == 0 ||
            neg[0] == '\0')
            harness_fail(__FILE__, __LINE__, "strerror(%s): \"%s\" / \"%s\"",
                         codes[i].name, neg, pos);
        const char *nn = cancel_err_name(-c);
        const char *pn = cancel_err_name(c);
        if (nn == NULL || pn == NULL || strcmp(nn, codes[i].name) != 0 ||
            strcmp(pn, codes[i].name) != 0)
            harness_fail(__FILE__, __LINE__, "err_name(%s): \"%s\" / \"%s\"",
                         codes[i].name, nn ? nn : "(null)", pn ? pn : "(null)");
        /* Distinct codes have distinct messages. */
        for (size_t j = 0; j < i; j++)
            ASSERT_TRUE(strcmp(cancel_strerror(codes[j].code), pos) != 0);
    }
}

TEST(strerror_of_unknown_code)
{
    const char *s = cancel_strerror(123456);
    ASSERT_NOT_NULL(s);
    ASSERT_TRUE(strcmp(s, "unknown error") == 0);
    ASSERT_NOT_NULL(cancel_strerror(-123456));
    ASSERT_TRUE(strcmp(cancel_err_name(123456), "UNKNOWN") == 0);
    ASSERT_TRUE(strcmp(cancel_err_name(-123456), "UNKNOWN") == 0);
    ASSERT_NOT_NULL(cancel_strerror(0));
    ASSERT_NOT_NULL(cancel_err_name(0));
    ASSERT_NOT_NULL(cancel_strerror(-2147483647 - 1)); /* INT_MIN: no -x UB */
    ASSERT_NOT_NULL(cancel_err_name(-2147483647 - 1));
}
