// The umbrella header compiles as C++ and its inline functions work there.
#include <cancel/cancel.h>

int main()
{
    cancel_token t = CANCEL_NONE;
    cancel_waitable w = CANCEL_WAIT_TOKEN(t);
    return cancel_requested(t) || w.kind != CANCEL_WAITABLE_TOKEN;
}
