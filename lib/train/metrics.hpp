#pragma once
// The run's record: one JSON object per logged step in metrics.jsonl (written as it goes, so a
// killed run keeps what it logged), and loss.png drawn by gnuplot at the end.
#include <cstdint>
#include <cstdio>
#include <string>

namespace autotp {

struct StepRecord {
  int64_t step = 0;
  double loss = 0, lr = 0, grad_norm = 0;
  double tokens_per_s = 0, tflops = 0, mfu = 0;
  double step_ms = 0;
  double peak_mem_gib = 0;
  int64_t epoch = 0, sample = 0;  // sampler position after the step (global samples)
};

class MetricsLog {
 public:
  // Truncates (append: a resumed run adds to it); Error names the path.
  explicit MetricsLog(const std::string& path, bool append = false);
  ~MetricsLog();
  void write(const StepRecord& r);

 private:
  FILE* f_ = nullptr;
};

// Draws loss against step from metrics.jsonl into png_path. Returns false (and says why on
// stderr) when gnuplot is not installed: the metrics are the record, the plot a convenience.
bool plot_loss(const std::string& metrics_path, const std::string& png_path);

}  // namespace autotp
