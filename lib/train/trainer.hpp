#pragma once
// The training run behind autotp-train: topology, plan, model, ZeRO optimizer and DP sampler,
// then the step loop (micro-batches -> AdamW step -> log), metrics.jsonl and loss.png.
#include <mpi.h>

#include <string>
#include <vector>

#include "train/train_args.hpp"

namespace autotp {

struct TrainResult {
  std::vector<double> losses;  // DP-averaged loss of every step (the same on every rank)
  double final_loss = 0;
  int64_t start_step = 0;  // steps done before this run (from the checkpoint it resumed)
  std::string checkpoint;  // the last checkpoint written ("" = none)
  // A stop signal (SIGUSR1/SIGTERM) ended the run early, after saving a checkpoint when
  // --save_dir was given: autotp-train exits with kExitRequeue.
  bool stopped = false;
};

// Collective over `world` (MPI_COMM_WORLD for autotp-train; tests run several topologies in one
// job on sub-communicators). Throws Error (CollectiveError when every rank knows it).
TrainResult run_training(const TrainArgs& args, MPI_Comm world = MPI_COMM_WORLD);

}  // namespace autotp
