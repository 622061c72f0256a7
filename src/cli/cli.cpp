#include "cli/cli.h"

#include <cstdio>

namespace moe {

int cli_main(int, char**) {
    std::fprintf(stderr, "moe-sim: under construction\n");
    return 2;
}

}  // namespace moe
