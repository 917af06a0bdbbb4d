/* auth: see core/include/berth/auth.h */
#include "internal.h"
