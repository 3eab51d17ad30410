// Finds and opens cuBLASLt at run time, by versioned soname only (libcublasLt.so.13, then .so.12;
// never the unversioned development link, which may name any version).
//
// Where it looks, in order (the first library that opens, resolves every entry point and reports a
// version of its soname's major wins; the others are kept in `tried` with their reasons):
//   1. CALMOE_CUBLASLT: a path to the library (only it is tried), or "off" (none is used);
//   2. a copy already loaded in the process (e.g. by PyTorch in the same process);
//   3. the system loader (LD_LIBRARY_PATH, ld.so.cache, RPATHs);
//   4. $CUDA_HOME/lib64, $CUDA_PATH/lib64, /usr/local/cuda/lib64;
//   5. nvidia/cu13/lib and nvidia/cublas/lib of an active Python environment ($VIRTUAL_ENV,
//      $CONDA_PREFIX: lib/python3.*/site-packages), then of the usual site-packages
//      (~/.local/lib/python3.*/site-packages, /usr/local/lib/python3.*/dist-packages and
//      site-packages, /usr/lib/python3/dist-packages).
// It is opened RTLD_NOW | RTLD_LOCAL: its symbols never satisfy another library's.
// Plain C++: no CUDA needed, so the loader is tested on every build machine.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "cuda/cublaslt_api.h"

namespace calmoe::lt {

// One place to look: a file path, or a bare soname for the system loader (system = true).
struct Candidate {
  std::string path;
  std::string origin;  // "CALMOE_CUBLASLT", "already loaded", "system loader", "CUDA_HOME", "VIRTUAL_ENV", ...
  bool system = false;
  bool already_loaded = false;
};

// The environment the search reads (a function, so tests can give their own).
using GetEnv = std::function<const char*(const char*)>;

// The candidates in search order. The directories of step 5 are expanded with the python3.*
// folders that exist. "off" gives none (and *off = true).
std::vector<Candidate> candidates(const GetEnv& env, bool* off = nullptr);

struct Library {
  void* handle = nullptr;  // dlopen handle (kept open for the process's life)
  Api api;
  std::string path;        // where it was opened from (dlinfo's path when the system loader found it)
  std::string origin;
  std::size_t version = 0; // cublasLtGetVersion(): major * 10000 + minor * 100 + patch
  bool fake = false;       // tools/fake-cublaslt
};

struct LoadResult {
  bool ok = false;
  Library lib;
  std::string reason;              // why none was used (every candidate's failure, or "CALMOE_CUBLASLT=off")
  std::vector<std::string> tried;  // "path: why not" per refused candidate
};

// Tries the candidates in order. allow_fake: accept tools/fake-cublaslt (emulated processes and
// the loader's own tests); a real process refuses it.
LoadResult load(const GetEnv& env, bool allow_fake);

// Opens one library and checks it: every entry point resolves, the version's major is the
// soname's (13 for .so.13, 12 for .so.12; the file name decides, so a copy renamed to another
// major is refused) and at least 12.0. On failure the handle is closed and *why says what failed.
bool open_library(const Candidate& c, bool allow_fake, Library* out, std::string* why);

// The soname's major from a path ("…/libcublasLt.so.13" -> 13, "…so.12.9.1.3" -> 12); 0 if none.
int soname_major(const std::string& path);

}  // namespace calmoe::lt
