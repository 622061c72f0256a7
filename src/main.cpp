#include "backend/threads.h"
#include "cli/cli.h"

int main(int argc, char** argv) {
    // First: may execute the program again with a short OpenMP spin count (backend/threads.h).
    moe::adopt_wait_policy(argv);
    return moe::cli_main(argc, argv);
}
