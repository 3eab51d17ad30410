// cuBLASLt discovery and loading (cuda/cublaslt_loader.h).
#include "cuda/cublaslt_loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <link.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace calmoe::lt {
namespace {

const char* const kSonames[] = {"libcublasLt.so.13", "libcublasLt.so.12"};

bool is_file(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The python3.* folders under dir/lib (site-packages of a virtual or conda environment), sorted
// newest name first so that one environment's several Pythons are looked at in a fixed order.
std::vector<std::string> python_dirs(const std::string& lib_dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(lib_dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind("python3", 0) == 0) out.push_back(lib_dir + "/" + name);
  }
  ::closedir(d);
  // by the minor version as a number (python3.11 before python3.9), then by name
  auto minor = [&](const std::string& path) {
    const char* p = path.c_str() + lib_dir.size() + 1 + 8;  // after "/python3."
    return (path.size() > lib_dir.size() + 9 && path[lib_dir.size() + 8] == '.' && *p >= '0' && *p <= '9') ? std::atoi(p) : -1;
  };
  std::sort(out.begin(), out.end(), [&](const std::string& a, const std::string& b) {
    const int ma = minor(a), mb = minor(b);
    return ma != mb ? ma > mb : a > b;
  });
  return out;
}

void add_dir(std::vector<Candidate>& out, const std::string& dir, const std::string& origin) {
  for (const char* so : kSonames) {
    const std::string p = dir + "/" + so;
    if (is_file(p)) out.push_back({p, origin, false, false});
  }
}

// nvidia/cu13/lib (CUDA 13 wheels: one folder for every library) and nvidia/cublas/lib (CUDA 12's
// nvidia-cublas-cu12 wheel) under one site-packages folder.
void add_site_packages(std::vector<Candidate>& out, const std::string& site, const std::string& origin) {
  add_dir(out, site + "/nvidia/cu13/lib", origin);
  add_dir(out, site + "/nvidia/cublas/lib", origin);
}

void add_environment(std::vector<Candidate>& out, const char* root, const std::string& origin) {
  if (!root || !*root) return;
  for (const std::string& py : python_dirs(std::string(root) + "/lib")) add_site_packages(out, py + "/site-packages", origin);
}

template <class F>
bool resolve(void* h, const char* name, F* slot) {
  void* s = ::dlsym(h, name);
  *slot = reinterpret_cast<F>(s);
  return s != nullptr;
}

}  // namespace

int soname_major(const std::string& path) {
  const std::string tag = "libcublasLt.so.";
  const std::size_t at = path.rfind(tag);
  if (at == std::string::npos) return 0;
  const char* p = path.c_str() + at + tag.size();
  if (*p < '0' || *p > '9') return 0;
  return std::atoi(p);
}

std::vector<Candidate> candidates(const GetEnv& env, bool* off) {
  std::vector<Candidate> out;
  if (off) *off = false;
  const char* forced = env("CALMOE_CUBLASLT");
  if (forced && *forced) {
    if (std::strcmp(forced, "off") == 0 || std::strcmp(forced, "OFF") == 0 || std::strcmp(forced, "0") == 0) {
      if (off) *off = true;
      return out;
    }
    // a bare name (no '/') goes to the system loader, which then says which file it chose
    out.push_back({forced, "CALMOE_CUBLASLT", std::strchr(forced, '/') == nullptr, false});
    return out;
  }
  for (const char* so : kSonames) out.push_back({so, "already loaded", true, true});
  for (const char* so : kSonames) out.push_back({so, "system loader", true, false});
  for (const char* var : {"CUDA_HOME", "CUDA_PATH"}) {
    const char* v = env(var);
    if (v && *v) add_dir(out, std::string(v) + "/lib64", var);
  }
  add_dir(out, "/usr/local/cuda/lib64", "/usr/local/cuda");
  add_environment(out, env("VIRTUAL_ENV"), "VIRTUAL_ENV");
  add_environment(out, env("CONDA_PREFIX"), "CONDA_PREFIX");
  const char* home = env("HOME");
  if (home && *home) {
    for (const std::string& py : python_dirs(std::string(home) + "/.local/lib")) add_site_packages(out, py + "/site-packages", "user site-packages");
  }
  for (const char* root : {"/usr/local/lib", "/usr/lib"}) {
    for (const std::string& py : python_dirs(root)) {
      add_site_packages(out, py + "/site-packages", "site-packages");
      add_site_packages(out, py + "/dist-packages", "site-packages");
    }
  }
  add_site_packages(out, "/usr/lib/python3/dist-packages", "site-packages");
  return out;
}

bool open_library(const Candidate& c, bool allow_fake, Library* out, std::string* why) {
  const int flags = RTLD_NOW | RTLD_LOCAL | (c.already_loaded ? RTLD_NOLOAD : 0);
  ::dlerror();
  void* h = ::dlopen(c.path.c_str(), flags);
  if (!h) {
    if (c.already_loaded) *why = "not loaded in this process";
    else {
      const char* e = ::dlerror();
      *why = e ? e : "dlopen failed";
    }
    return false;
  }
  Library lib;
  lib.handle = h;
  lib.origin = c.origin;
  lib.path = c.path;
  if (c.system) {  // the file the system loader chose
    link_map* lm = nullptr;
    if (::dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && *lm->l_name) lib.path = lm->l_name;
  }
  auto fail = [&](const std::string& w) {
    *why = w;
    ::dlclose(h);
    return false;
  };
  lib.fake = ::dlsym(h, kFakeMarker) != nullptr;
  if (lib.fake && !allow_fake) return fail("tools/fake-cublaslt (a CPU reference for the emulator tests) is not for a real GPU");
#define CALMOE_LT_RESOLVE(member, name) \
  if (!resolve(h, #name, &lib.api.member)) return fail("no symbol " #name);
  CALMOE_LT_ENTRY_POINTS(CALMOE_LT_RESOLVE)
#undef CALMOE_LT_RESOLVE
  lib.version = lib.api.GetVersion();
  const int want = soname_major(lib.path) ? soname_major(lib.path) : soname_major(c.path);
  const int major = int(lib.version / 10000);
  if (want == 0) return fail("not named libcublasLt.so.<major>");
  if (major != want || major < 12)
    return fail("cublasLtGetVersion() = " + std::to_string(lib.version) + ": not a " + std::to_string(want) + ".x library (" +
                (major < 12 ? "calmoe needs cuBLASLt 12 or 13" : "the file's soname says another major") + ")");
  *out = lib;
  return true;
}

LoadResult load(const GetEnv& env, bool allow_fake) {
  LoadResult r;
  bool off = false;
  const std::vector<Candidate> cs = candidates(env, &off);
  if (off) {
    r.reason = "CALMOE_CUBLASLT=off";
    return r;
  }
  for (const Candidate& c : cs) {
    std::string why;
    if (open_library(c, allow_fake, &r.lib, &why)) {
      r.ok = true;
      return r;
    }
    if (!c.already_loaded) r.tried.push_back(c.path + " (" + c.origin + "): " + why);
  }
  r.reason = "no usable libcublasLt.so.13 or .so.12";
  if (!r.tried.empty()) {
    r.reason += ": ";
    for (std::size_t i = 0; i < r.tried.size(); ++i) r.reason += (i ? "; " : "") + r.tried[i];
  }
  r.reason += ". Install the CUDA toolkit's cuBLAS or PyTorch, or set CALMOE_CUBLASLT=/path/to/libcublasLt.so.13";
  return r;
}

}  // namespace calmoe::lt
