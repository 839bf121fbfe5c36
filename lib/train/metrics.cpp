#include "train/metrics.hpp"

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace autotp {

MetricsLog::MetricsLog(const std::string& path, bool append) {
  f_ = std::fopen(path.c_str(), append ? "a" : "w");
  check(f_ != nullptr, path, ": cannot create the metrics file; check that --out_dir is writable");
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::write(const StepRecord& r) {
  nlohmann::json j = {{"step", r.step},
                      {"loss", r.loss},
                      {"lr", r.lr},
                      {"grad_norm", r.grad_norm},
                      {"tokens_per_s", r.tokens_per_s},
                      {"tflops", r.tflops},
                      {"mfu", r.mfu},
                      {"step_ms", r.step_ms},
                      {"peak_mem_gib", r.peak_mem_gib},
                      {"epoch", r.epoch},
                      {"sample", r.sample}};
  std::fprintf(f_, "%s\n", j.dump().c_str());
  std::fflush(f_);
}

bool plot_loss(const std::string& metrics_path, const std::string& png_path) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    std::fprintf(stderr, "autotp: gnuplot is not installed; skipping %s\n", png_path.c_str());
    return false;
  }
  std::string data = png_path + ".dat";
  {
    std::ifstream in(metrics_path);
    std::ofstream out(data);
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded()) out << j["step"] << ' ' << j["loss"] << '\n';
    }
  }
  std::string script = png_path + ".gp";
  {
    std::ofstream gp(script);
    gp << "set terminal pngcairo size 900,500\nset output '" << png_path << "'\n"
       << "set xlabel 'step'\nset ylabel 'loss'\nset grid\nset title 'autotp training loss'\n"
       << "plot '" << data << "' using 1:2 with lines lw 2 title 'loss'\n";
  }
  int rc = std::system(("gnuplot '" + script + "' 2>&1").c_str());
  std::remove(script.c_str());
  std::remove(data.c_str());
  if (rc != 0) std::fprintf(stderr, "autotp: gnuplot failed; %s not written\n", png_path.c_str());
  return rc == 0;
}

}  // namespace autotp
