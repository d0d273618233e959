/* libcancel: .NET's cooperative cancellation for C and POSIX.
 * The umbrella header: the only one a user needs to include. */
#ifndef CANCEL_CANCEL_H
#define CANCEL_CANCEL_H

#include "token.h"
#include "wait.h"
#include "io.h"
#include "task.h"

#endif /* CANCEL_CANCEL_H */
