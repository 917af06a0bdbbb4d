/* gc: see core/include/berth/gc.h */
#include "internal.h"
