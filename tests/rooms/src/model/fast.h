// A forbidden include for the rooms check to find: model code calls ops, never Eigen.
#pragma once

#include <Eigen/Core>

#include "backend/backend.h"
#include "routing/router.h"
