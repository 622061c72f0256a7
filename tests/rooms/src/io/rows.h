// A forbidden arrow for the rooms check to find: io/ uses no room.
#pragma once

#include "io/csv_writer.h"
#include "tasks/task.h"
