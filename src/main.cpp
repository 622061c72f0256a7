#include "cli/cli.h"

int main(int argc, char** argv) { return moe::cli_main(argc, argv); }
