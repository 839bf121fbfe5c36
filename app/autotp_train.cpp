// autotp-train: mpirun -np N autotp-train [--model_name M] [--deepspeed_config F] ...
#include <cstdio>

#include "dist/mpi_main.hpp"
#include "train/stop_signal.hpp"
#include "train/trainer.hpp"

int main(int argc, char** argv) {
  return autotp::mpi_main("autotp-train", argc, argv, [&] {
    autotp::TrainArgs args;
    if (!args.parse(argc, argv)) return 0;
    auto r = autotp::run_training(args);
    return r.stopped ? autotp::kExitRequeue : 0;
  });
}
