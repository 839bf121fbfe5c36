#pragma once
// Every user-facing failure is an autotp::Error whose message names the file, field or tensor
// and says what to do. Mains catch it once, print it, and exit non-zero (MPI_Abort under MPI).
#include <sstream>
#include <stdexcept>
#include <string>

namespace autotp {

struct Error : std::runtime_error {
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... R>
void append(std::ostringstream& os, const T& v, const R&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

// fail("tensor ", name, ": expected ", a, " got ", b) throws Error with the joined message.
template <typename... A>
[[noreturn]] void fail(const A&... parts) {
  std::ostringstream os;
  detail::append(os, parts...);
  throw Error(os.str());
}

template <typename... A>
void check(bool ok, const A&... parts) {
  if (!ok) fail(parts...);
}

}  // namespace autotp
