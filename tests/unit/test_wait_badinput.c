/* Bad input to every function of cancel/wait.h: NULL objects, bad counts
 * and forever-waits that nothing could end.  Each returns -EINVAL (false
 * for the predicate), never crashes, and changes nothing that was already
 * there.  Argument checks come before the cancellation check: a NULL
 * object with a canceled token is still -EINVAL, and records nothing. */
#include "harness.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>

static cancel_source *canceled_source(void)
{
    cancel_source *src = cancel_source_new();
    ASSERT_NOT_NULL(src);
    ASSERT_OK(cancel_source_cancel(src));
    return src;
}

TEST(bad_token_waits)
{
    ASSERT_ERR(cancel_wait(CANCEL_NONE, CANCEL_INFINITE), -EINVAL);
    ASSERT_ERR(cancel_wait(CANCEL_NONE, INT64_MIN), -EINVAL);
    ASSERT_ERR(cancel_sleep(CANCEL_NONE, CANCEL_INFINITE), -EINVAL);
    ASSERT_ERR(cancel_sleep(CANCEL_NONE, INT64_MIN), -EINVAL);
    ASSERT_ERR(cancel_token_fd(CANCEL_NONE), -EINVAL);
    /* Nothing was recorded by any of them. */
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), CANCEL_NONE));
}

TEST(bad_event)
{
    ASSERT_ERR(cancel_event_init(NULL, false), -EINVAL);
    ASSERT_ERR(cancel_event_init(NULL, true), -EINVAL);
    ASSERT_ERR(cancel_event_destroy(NULL), -EINVAL);
    ASSERT_ERR(cancel_event_set(NULL), -EINVAL);
    ASSERT_ERR(cancel_event_reset(NULL), -EINVAL);
    ASSERT_FALSE(cancel_event_is_set(NULL));
    ASSERT_ERR(cancel_event_wait(NULL, CANCEL_NONE, 0), -EINVAL);
    ASSERT_ERR(cancel_event_wait(NULL, CANCEL_NONE, CANCEL_INFINITE), -EINVAL);
    cancel_source *src = canceled_source();
    ASSERT_ERR(cancel_event_wait(NULL, cancel_source_token(src), 0), -EINVAL);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), CANCEL_NONE));
    cancel_source_free(src);
}

TEST(bad_semaphore)
{
    cancel_semaphore s;
    ASSERT_ERR(cancel_semaphore_init(NULL, 0, 1), -EINVAL);
    ASSERT_ERR(cancel_semaphore_destroy(NULL), -EINVAL);
    ASSERT_ERR(cancel_semaphore_wait(NULL, CANCEL_NONE, 0), -EINVAL);
    ASSERT_ERR(cancel_semaphore_wait(NULL, CANCEL_NONE, CANCEL_INFINITE),
               -EINVAL);
    ASSERT_ERR(cancel_semaphore_release(NULL, 1), -EINVAL);
    ASSERT_ERR(cancel_semaphore_count(NULL), -EINVAL);

    ASSERT_OK(cancel_semaphore_init(&s, 2, 3));
    ASSERT_ERR(cancel_semaphore_init(&s, -1, 3), -EINVAL);
    ASSERT_ERR(cancel_semaphore_init(&s, 4, 3), -EINVAL);
    ASSERT_ERR(cancel_semaphore_init(&s, 0, 0), -EINVAL);
    ASSERT_ERR(cancel_semaphore_release(&s, 0), -EINVAL);
    ASSERT_ERR(cancel_semaphore_release(&s, -3), -EINVAL);
    ASSERT_EQ(cancel_semaphore_count(&s), 2); /* nothing lost */

    cancel_source *src = canceled_source();
    ASSERT_ERR(cancel_semaphore_wait(NULL, cancel_source_token(src), 0),
               -EINVAL);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), CANCEL_NONE));
    cancel_source_free(src);
    ASSERT_OK(cancel_semaphore_destroy(&s));
}

TEST(bad_countdown)
{
    cancel_countdown c;
    ASSERT_ERR(cancel_countdown_init(NULL, 1), -EINVAL);
    ASSERT_ERR(cancel_countdown_destroy(NULL), -EINVAL);
    ASSERT_ERR(cancel_countdown_signal(NULL, 1), -EINVAL);
    ASSERT_ERR(cancel_countdown_add(NULL, 1), -EINVAL);
    ASSERT_ERR(cancel_countdown_reset(NULL, 1), -EINVAL);
    ASSERT_ERR(cancel_countdown_reset(NULL, 0), -EINVAL);
    ASSERT_ERR(cancel_countdown_count(NULL), -EINVAL);
    ASSERT_ERR(cancel_countdown_wait(NULL, CANCEL_NONE, 0), -EINVAL);
    ASSERT_ERR(cancel_countdown_wait(NULL, CANCEL_NONE, CANCEL_INFINITE),
               -EINVAL);

    ASSERT_OK(cancel_countdown_init(&c, 3));
    ASSERT_ERR(cancel_countdown_init(&c, -1), -EINVAL);
    ASSERT_ERR(cancel_countdown_signal(&c, 0), -EINVAL);
    ASSERT_ERR(cancel_countdown_signal(&c, -1), -EINVAL);
    ASSERT_ERR(cancel_countdown_signal(&c, 4), -EINVAL);
    ASSERT_ERR(cancel_countdown_add(&c, 0), -EINVAL);
    ASSERT_ERR(cancel_countdown_add(&c, INT_MIN), -EINVAL);
    ASSERT_ERR(cancel_countdown_reset(&c, -1), -EINVAL);
    ASSERT_EQ(cancel_countdown_count(&c), 3); /* nothing lost */

    cancel_source *src = canceled_source();
    ASSERT_ERR(cancel_countdown_wait(NULL, cancel_source_token(src), 0),
               -EINVAL);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), CANCEL_NONE));
    cancel_source_free(src);
    ASSERT_OK(cancel_countdown_destroy(&c));
}

TEST(bad_cond_wait)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    ASSERT_ERR(cancel_cond_wait(NULL, &m, CANCEL_NONE, 0), -EINVAL);
    ASSERT_ERR(cancel_cond_wait(&c, NULL, CANCEL_NONE, 0), -EINVAL);
    ASSERT_ERR(cancel_cond_wait(NULL, NULL, CANCEL_NONE, CANCEL_INFINITE),
               -EINVAL);
    cancel_source *src = canceled_source();
    ASSERT_ERR(cancel_cond_wait(NULL, &m, cancel_source_token(src), 0),
               -EINVAL);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), CANCEL_NONE));
    cancel_source_free(src);
    /* The mutex was never touched: it is free. */
    ASSERT_OK(pthread_mutex_trylock(&m));
    ASSERT_OK(pthread_mutex_unlock(&m));
}

TEST(bad_wait_any)
{
    cancel_source *src = canceled_source();
    cancel_waitable items[] = {
        CANCEL_WAIT_TOKEN(cancel_source_token(src)),
        CANCEL_WAIT_EVENT(NULL),
    };
    ASSERT_ERR(cancel_wait_any(NULL, 0, 0), -EINVAL);
    ASSERT_ERR(cancel_wait_any(NULL, 3, CANCEL_INFINITE), -EINVAL);
    ASSERT_ERR(cancel_wait_any(items, 0, 0), -EINVAL);
    ASSERT_ERR(cancel_wait_any(items, 2, 0), -EINVAL);
    ASSERT_EQ(cancel_wait_any(items, 1, 0), 0); /* the good prefix */
    cancel_source_free(src);
}

TEST(strerror_names_wait_errors)
{
    static const int codes[] = {ECANCELED, ETIMEDOUT, EINVAL, EBUSY,
                                EOVERFLOW, EBADF,     ENOMEM};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        ASSERT_NOT_NULL(cancel_strerror(-codes[i]));
        ASSERT_TRUE(cancel_strerror(-codes[i])[0] != '\0');
        ASSERT_TRUE(strcmp(cancel_err_name(-codes[i]), "UNKNOWN") != 0);
    }
}
