/* stopped_refused - stopped_tree with a child amber refuses to dump (see there). */
#define STOPPED_REFUSED
#include "stopped_tree.c"
