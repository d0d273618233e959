/* Linked sources (CreateLinkedTokenSource).
 *
 * A linked source is a plain source plus one registration on each parent,
 * held in its ext, which shares the source's allocation.  A parent's cancel
 * runs linked_fired like any other callback (LIFO among its callbacks),
 * which cancels the child with the parent's reason on the same thread.
 * Freeing the child unregisters every link; cancel_unregister waits for a
 * link whose callback is running on another thread, so the child outlives
 * every call into it, and no parent keeps anything of it afterwards.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

static void linked_fired(void *arg)
{
    struct cancel__link *link = arg;
    /* The parent is alive: it is running this callback (or its token was
     * handed to cancel_source_new_linked, which is running it inline). */
    int reason = __atomic_load_n(&link->parent->head.reason, __ATOMIC_ACQUIRE);
    cancel__cancel(link->child, reason);
}

/* The ext follows the source in the same allocation, 16-byte aligned. */
#define EXT_OFFSET ((sizeof(cancel_source) + 15) & ~(size_t)15)

cancel_source *cancel_source_new_linked(const cancel_token *tokens,
                                        size_t count)
{
    if (tokens == NULL && count > 0) {
        errno = EINVAL;
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        n += tokens[i].src_ != NULL;
    if (n == 0)
        return cancel_source_new();
    if (n > (SIZE_MAX - EXT_OFFSET - sizeof(struct cancel__ext)) /
                sizeof(struct cancel__link)) {
        errno = ENOMEM;
        return NULL;
    }

    char *block = cancel__malloc(EXT_OFFSET + sizeof(struct cancel__ext) +
                                 n * sizeof(struct cancel__link));
    if (block == NULL)
        return NULL;
    cancel_source *src = (cancel_source *)(void *)block;
    struct cancel__ext *ext = (struct cancel__ext *)(void *)(block + EXT_OFFSET);
    src->head.reason = 0;
    atomic_init(&src->refs, 1);
    src->flags = CANCEL__EXT_INLINE;
    atomic_init(&src->waiters, 0);
    src->regs = NULL;
    ext->src = src;
    ext->heap_index = CANCEL__NOT_ARMED;
    ext->async_next = NULL;
    atomic_init(&ext->fd, -1);
    ext->wfd = -1;
    ext->nlinks = 0;
    atomic_init(&src->ext, ext);

    for (size_t i = 0; i < count; i++) {
        if (tokens[i].src_ == NULL)
            continue;
        struct cancel__link *link = &ext->links[ext->nlinks++];
        link->parent = tokens[i].src_;
        link->child = src;
        /* A parent already canceled runs linked_fired here and cancels the
         * child with its reason; the other parents are not needed then. */
        if (cancel_register(tokens[i], &link->reg, linked_fired, link) < 0)
            break;
    }
    return src;
}

void cancel__unlink_parents(struct cancel__ext *ext)
{
    for (size_t i = 0; i < ext->nlinks; i++)
        cancel_unregister(&ext->links[i].reg);
}
