/* sink: takes every message and never answers (for timeout tests). */
#include "uqbar.h"

int main(void)
{
    uq_msg m;
    for (;;)
        if (uq_receive(&m) > 0) uq_msg_free(&m);
}
