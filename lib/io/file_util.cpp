#include "io/file_util.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.hpp"

namespace autotp {

std::string errno_text(int err) {
  return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")";
}

std::string tmp_path(const std::string& path) {
  return path + ".tmp";
}

void fsync_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(path, ": cannot open for fsync: ", errno_text(errno));
  int rc = ::fsync(fd), err = errno;
  ::close(fd);
  // EINVAL: the file lives on something that cannot sync (a pipe, /dev/null); nothing to do.
  if (rc != 0 && err != EINVAL)
    fail(path, ": fsync failed: ", errno_text(err), " (is the disk full?)");
}

void rename_into_place(const std::string& tmp, const std::string& path) {
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    fail("cannot rename ", tmp, " to ", path, ": ", errno_text(errno));
}

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  check(bool(f), path, ": cannot open: ", errno_text(errno));
  std::ostringstream os;
  os << f.rdbuf();
  check(!f.bad(), path, ": read error");
  return os.str();
}

void write_text_file_atomic(const std::string& path, const std::string& text) {
  std::string tmp = tmp_path(path);
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(path, ": cannot create ", tmp, ": ", errno_text(errno));
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fflush(f) == 0 &&
            ::fsync(fileno(f)) == 0;
  int err = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    fail(path, ": write failed: ", errno_text(err), " (is the disk full?)");
  }
  rename_into_place(tmp, path);
}

}  // namespace autotp
