// The calmoe core C++ API (no N-API, no CUDA types): include this from embedders and tests.
#pragma once
#include "calmoe/calibration.h"
#include "calmoe/device.h"
#include "calmoe/error.h"
#include "calmoe/tilted.h"
#include "calmoe/temperature.h"
#include "calmoe/audit.h"
#include "calmoe/drift.h"
