#pragma once
// Small POSIX file helpers shared by the writers: every output is written to PATH.tmp, synced,
// and renamed over PATH only when complete, so a crash or a full disk never leaves half a file.
#include <cstdint>
#include <string>

namespace autotp {

std::string errno_text(int err);                // "No space left on device (errno 28)"
std::string tmp_path(const std::string& path);  // PATH.tmp
// fsync(2) PATH (the data must be on disk before the rename makes it visible).
void fsync_file(const std::string& path);
// rename(2) tmp over path; Error names both on failure.
void rename_into_place(const std::string& tmp, const std::string& path);
// The whole file as bytes; Error names the file if it cannot be read.
std::string read_text_file(const std::string& path);
// Writes text to PATH.tmp, syncs and renames it; Error names PATH on any failure.
void write_text_file_atomic(const std::string& path, const std::string& text);

}  // namespace autotp
