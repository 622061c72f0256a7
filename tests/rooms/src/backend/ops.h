// Allowed: backend/ uses config/ (below every room) and itself.
#pragma once

#include "backend/device.h"
#include "config/config.h"
