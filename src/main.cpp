#include "backend/threads.h"
#include "cli/cli.h"

int main(int argc, char** argv) {
    // First: may execute the program again with OMP_WAIT_POLICY=PASSIVE (backend/threads.h).
    moe::adopt_passive_wait_policy(argv);
    return moe::cli_main(argc, argv);
}
