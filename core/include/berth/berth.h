/* berth: a storage engine for OCI container registries. */
#ifndef BERTH_H
#define BERTH_H

#include "berth/errors.h"
#include "berth/buf.h"
#include "berth/digest.h"
#include "berth/sys/driver.h"
#include "berth/store.h"
#include "berth/blob.h"
#include "berth/manifest.h"
#include "berth/tag.h"
#include "berth/gc.h"
#include "berth/auth.h"

#endif
