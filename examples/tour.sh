#!/bin/sh
# The tour of the examples (`make demo`): run every example program that has
# been built, in the order of SCENARIOS.md, each under a one-line heading.
#
# Usage: examples/tour.sh <dir-with-built-examples>
#
# Exits 1 if any example fails, 2 on a usage error.  An example whose binary
# does not exist (yet) is skipped, so a new scenario plugs in by adding its
# row below.
set -u

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 <dir-with-built-examples>" >&2
    exit 2
fi
dir=$1

# One row per run:  id | program | arguments | stdin | title
#   stdin: printf(1) text typed into the program ("C\n"); empty: no input.
#   arguments: split on spaces; empty: none.
table='
E1  | e1_polling_work_item  |            |     | polling from a thread-pool work item
E2  | e2_object_callbacks   |            |     | object cancellation through callbacks
E2  | e2_object_callbacks   | --variants |     | what else callbacks promise
E3  | e3_nested_loops       |            |     | nested loops that poll once per column
E3  | e3_nested_loops       | --throw    |     | nested loops: throw instead, the task ends Canceled
E4  | e4_callback_request   |            |     | a callback cancels a pending request
E4  | e4_callback_request   | --canceled-first | | the callback runs at registration
E4  | e4_callback_request   | --answering | | the server answers: nothing to cancel
E5  | e5_wait_any           |            |     | wait-any on an event and the token handle
E5  | e5_wait_any           | --script canceled-running | | wait-any: canceled while running
E5  | e5_wait_any           | --script timeout | | wait-any: the wait times out
E6  | e6_event_wait         |            |     | an event wait that takes the token
E6  | e6_event_wait         | --script canceled-running | | event wait: canceled while running
E6  | e6_event_wait         | --variants |     | a canceled token wins on entry (F11)
E7  | e7_linked_timeout     |            |     | a linked token: internal timeout, external cancel
E7  | e7_linked_timeout     | --script cancel | | a linked token: the user cancels
E7  | e7_linked_timeout     | --variants |     | what else linked tokens promise (F7)
E8  | e8_download_task      |            |     | a callback aborts a download inside a task
E8  | e8_download_task      | --answering | | the server answers: the download completes
E8  | e8_download_task      | --canceled-first | | canceled before the task runs: the body never runs
E8  | e8_download_task      | --unregister-early | | unregistered too early: a later cancel no longer aborts
E9  | e9_task_pattern       |            |     | the basic task pattern
E9  | e9_task_pattern       | --variants |     | how else a task ends: Faulted, RanToCompletion (F6)
E10 | e10_task_children     |            |     | cancel a task and its children
E10 | e10_task_children     | --attached |     | attached children: the parent waits for them
E11 | e11_parallel_query    |            |     | cancel a parallel query over data
E11 | e11_parallel_query    | --cancel   |     | the query canceled while it runs
E12 | e12_query_polls       |            |     | cancel a parallel query whose element function polls
E12 | e12_query_polls       | --fail     |     | a failure and the cancellation: a composite of both (F9)
E12 | e12_query_polls       | --foreign  |     | canceled by a foreign token: a failure, not a cancellation
S1  | s1_parallel_foreach   |            |     | cancel a parallel for-each loop
S1  | s1_parallel_foreach   | --foreign  |     | a foreign token: a composite error with the cancellation inside (F10)
S2  | s2_thread_polling     |            | C\n | a raw thread that polls
Loop | epoll_loop          |            |     | an epoll loop that watches the token fd; another thread cancels
Loop | epoll_loop          | --idle-timeout-ms 100 | | an epoll loop that a timer cancels once it runs out of work
Tool | cancopy             |            | Copied by cancopy, chunk by chunk, from standard input to standard output.\n | a copy tool that stops cleanly on Ctrl-C or a timeout
'

trim() {
    printf '%s' "$1" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//'
}

ran=0
failed=0
skipped=0
# The table is read from a file, not a pipe, so the counters survive the loop
# and the examples' standard input is not the table.
rows=$(mktemp) || exit 2
trap 'rm -f "$rows"' EXIT
printf '%s\n' "$table" >"$rows"

while IFS='|' read -r id prog args input title; do
    id=$(trim "$id")
    [ -n "$id" ] || continue
    prog=$(trim "$prog")
    args=$(trim "$args")
    input=$(trim "$input")
    title=$(trim "$title")
    if [ ! -x "$dir/$prog" ]; then
        skipped=$((skipped + 1))
        continue
    fi

    heading="== $id: $title =="
    [ -n "$args" ] && heading="== $id ($prog $args): $title =="
    echo "$heading"
    # $args is split on purpose: it holds the program's arguments.
    # shellcheck disable=SC2086
    if [ -n "$input" ]; then
        # The format is the table's own text, so that "C\n" types C, Enter.
        # shellcheck disable=SC2059
        printf "$input" | "$dir/$prog" $args
    else
        "$dir/$prog" $args </dev/null
    fi
    rc=$?
    ran=$((ran + 1))
    if [ "$rc" -ne 0 ]; then
        echo "** $id: $prog exited with status $rc"
        failed=$((failed + 1))
    fi
    echo
done <"$rows"

echo "tour: $ran run, $failed failed, $skipped not built yet"
[ "$ran" -gt 0 ] || echo "tour: no example found in $dir" >&2
[ "$failed" -eq 0 ]
