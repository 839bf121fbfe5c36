// autotp-bench: mpirun -np N autotp-bench --model phi-4-mini --layers 8 --seq_length 2048 ...
// Times the training step on random weights and token ids (train/bench.hpp says what it prints).
#include "dist/mpi_main.hpp"
#include "train/bench.hpp"

int main(int argc, char** argv) {
  return autotp::mpi_main("autotp-bench", argc, argv, [&] {
    autotp::BenchArgs args;
    if (!args.parse(argc, argv)) return 0;
    autotp::run_bench(args);
    return 0;
  });
}
