/*
 * berth: a storage engine for OCI container registries (libberth).
 * Tokens and passwords are another library: berth/auth.h, libberth-auth.
 */
#ifndef BERTH_H
#define BERTH_H

#include "berth/errors.h"
#include "berth/buf.h"
#include "berth/base64.h"
#include "berth/digest.h"
#include "berth/sys/driver.h"
#include "berth/store.h"
#include "berth/blob.h"
#include "berth/manifest.h"
#include "berth/tag.h"
#include "berth/catalog.h"
#include "berth/gc.h"

#endif
