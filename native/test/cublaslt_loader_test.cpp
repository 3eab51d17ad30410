// The cuBLASLt loader (cuda/cublaslt_loader.h) over temporary folder trees laid out like a CUDA
// toolkit ($CUDA_HOME/lib64), a Python venv with NVIDIA's CUDA 13 wheels
// ($VIRTUAL_ENV/lib/python3.11/site-packages/nvidia/cu13/lib) and a conda env with the CUDA 12 wheel
// (nvidia/cublas/lib), holding copies of the fake library (tools/fake-cublaslt), with the
// environment given as a function: the candidate order, CALMOE_CUBLASLT (a path, off), the fake
// refused unless allowed, the version checked against the soname, files that are no library, the
// unversioned name never tried, a copy already loaded in the process, and the reason's text.
//
// The fake's path: argv[1], else CALMOE_FAKE_CUBLASLT_FILE (a compile definition set by CMake).
#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "cuda/cublaslt_loader.h"
#include "test_util.h"

namespace fs = std::filesystem;
namespace lt = calmoe::lt;

namespace {

std::string g_fake;  // the built fake library
fs::path g_root;     // this run's temporary folder

#define CHECK_HAS(text, part)                                                                                         \
  do {                                                                                                                \
    const std::string t_ = (text), p_ = (part);                                                                       \
    if (t_.find(p_) == std::string::npos) t::fail(__FILE__, __LINE__, "'" + p_ + "' not in: " + t_);                 \
  } while (0)
#define CHECK_STR(got, want)                                                                                          \
  do {                                                                                                                \
    const std::string g_ = (got), w_ = (want);                                                                        \
    if (g_ != w_) t::fail(__FILE__, __LINE__, std::string(#got) + ": got '" + g_ + "', want '" + w_ + "'");           \
  } while (0)

// An environment of our own: only these variables exist (HOME points into the tree, so that the
// user's own site-packages do not take part).
struct Env {
  std::map<std::string, std::string> vars;
  lt::GetEnv fn() const {
    return [this](const char* name) -> const char* {
      auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};

// A fresh folder under this run's root.
fs::path tree(const std::string& name) {
  const fs::path p = g_root / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// A copy of the fake at dir/file (folders made as needed).
std::string put_fake(const fs::path& dir, const std::string& file) {
  fs::create_directories(dir);
  const fs::path p = dir / file;
  fs::copy_file(g_fake, p, fs::copy_options::overwrite_existing);
  return p.string();
}

std::string put_text(const fs::path& dir, const std::string& file, const std::string& text) {
  fs::create_directories(dir);
  const fs::path p = dir / file;
  std::ofstream(p) << text;
  return p.string();
}

bool under(const std::string& path, const fs::path& dir) { return path.rfind(dir.string() + "/", 0) == 0; }

// The refused candidates of a load inside `dir` (the system loader's failures are listed too).
std::vector<std::string> tried_inside(const lt::LoadResult& r, const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& t : r.tried)
    if (under(t, dir)) out.push_back(t);
  return out;
}

// The candidates inside `dir` (the machine's own /usr/local/cuda or site-packages may add others).
std::vector<lt::Candidate> inside(const std::vector<lt::Candidate>& cs, const fs::path& dir) {
  std::vector<lt::Candidate> out;
  for (const auto& c : cs)
    if (under(c.path, dir)) out.push_back(c);
  return out;
}

// Closes what load() opened (it keeps its handle for the process's life), so that the next case
// does not find that copy "already loaded"; checks that no libcublasLt.so.13/.12 is left loaded.
void release(lt::LoadResult& r) {
  if (r.ok && r.lib.handle) ::dlclose(r.lib.handle);
  r.lib.handle = nullptr;
  for (const char* so : {"libcublasLt.so.13", "libcublasLt.so.12"}) {
    void* h = ::dlopen(so, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (h) {
      ::dlclose(h);
      t::fail(__FILE__, __LINE__, std::string(so) + " still loaded after the case closed it");
    }
  }
}

// Whether this machine has a real cuBLASLt where the loader looks before the trees (a GPU machine
// with the toolkit): then load() takes it first, and the cases that load through the trees only
// check what does not depend on it.
bool machine_has_cublaslt() {
  static int has = -1;
  if (has < 0) {
    Env e;
    e.vars["HOME"] = tree("empty-home").string();
    lt::LoadResult r = lt::load(e.fn(), /*allow_fake=*/false);
    has = r.ok ? 1 : 0;
    if (r.ok) {
      std::printf("  NOTE: this machine has cuBLASLt (%s, %s, version %zu): cases that load through the temporary trees are skipped\n",
                  r.lib.path.c_str(), r.lib.origin.c_str(), r.lib.version);
      ::dlclose(r.lib.handle);
    }
  }
  return has == 1;
}

// A CUDA toolkit, a venv with the CUDA 13 wheels, a conda env with the CUDA 12 wheel and a user
// site-packages; every folder also holds the unversioned development name.
struct Layout {
  fs::path cuda_home, cuda_path, venv, conda, home;
  std::string cuda13, cuda12, cuda_path13, venv13, venv12, venv_old13, conda12, user13;
  Env env;
  explicit Layout(const std::string& name) {
    const fs::path root = tree(name);
    cuda_home = root / "cuda-13.0";
    cuda_path = root / "cuda-path";
    venv = root / "venv";
    conda = root / "conda";
    home = root / "home";
    cuda13 = put_fake(cuda_home / "lib64", "libcublasLt.so.13");
    cuda12 = put_fake(cuda_home / "lib64", "libcublasLt.so.12");
    put_fake(cuda_home / "lib64", "libcublasLt.so");
    cuda_path13 = put_fake(cuda_path / "lib64", "libcublasLt.so.13");
    const fs::path site = venv / "lib/python3.11/site-packages/nvidia";
    venv13 = put_fake(site / "cu13/lib", "libcublasLt.so.13");
    venv12 = put_fake(site / "cublas/lib", "libcublasLt.so.12");
    put_fake(site / "cu13/lib", "libcublasLt.so");
    venv_old13 = put_fake(venv / "lib/python3.9/site-packages/nvidia/cu13/lib", "libcublasLt.so.13");
    conda12 = put_fake(conda / "lib/python3.10/site-packages/nvidia/cublas/lib", "libcublasLt.so.12");
    user13 = put_fake(home / ".local/lib/python3.12/site-packages/nvidia/cu13/lib", "libcublasLt.so.13");
    env.vars = {{"CUDA_HOME", cuda_home.string()},
                {"CUDA_PATH", cuda_path.string()},
                {"VIRTUAL_ENV", venv.string()},
                {"CONDA_PREFIX", conda.string()},
                {"HOME", home.string()}};
  }
};

TEST(candidate_order) {
  Layout l("order");
  bool off = true;
  const std::vector<lt::Candidate> cs = lt::candidates(l.env.fn(), &off);
  CHECK(!off);
  // first what the process has, then the system loader, each by soname, 13 before 12
  CHECK(cs.size() >= 4);
  if (cs.size() < 4) return;
  const char* sonames[4] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.13", "libcublasLt.so.12"};
  for (int i = 0; i < 4; ++i) {
    CHECK_STR(cs[i].path, sonames[i]);
    CHECK(cs[i].system);
    CHECK(cs[i].already_loaded == (i < 2));
  }
  CHECK_STR(cs[0].origin, "already loaded");
  CHECK_STR(cs[2].origin, "system loader");
  // then the toolkit folders, then the Python environments (newest python3.* first), user site
  const std::vector<std::pair<std::string, std::string>> want = {
      {l.cuda13, "CUDA_HOME"},      {l.cuda12, "CUDA_HOME"},   {l.cuda_path13, "CUDA_PATH"},   {l.venv13, "VIRTUAL_ENV"},
      {l.venv12, "VIRTUAL_ENV"},    {l.venv_old13, "VIRTUAL_ENV"}, {l.conda12, "CONDA_PREFIX"}, {l.user13, "user site-packages"}};
  const std::vector<lt::Candidate> got = inside(cs, g_root);
  CHECK_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size() && i < want.size(); ++i) {
    CHECK_STR(got[i].path, want[i].first);
    CHECK_STR(got[i].origin, want[i].second);
    CHECK(!got[i].system && !got[i].already_loaded);
  }
  // the unversioned development name is never a candidate
  for (const auto& c : cs) {
    const std::string& p = c.path;
    if (p.size() >= 15 && p.compare(p.size() - 15, 15, "libcublasLt.so") == 0) t::fail(__FILE__, __LINE__, "unversioned candidate " + p);
    CHECK(lt::soname_major(p) == 13 || lt::soname_major(p) == 12);
  }
  // the system's own toolkit folder sits between CUDA_PATH and the environments
  bool usr_local_after_cuda_path = true;
  std::size_t at_cuda_path = 0, at_venv = 0;
  for (std::size_t i = 0; i < cs.size(); ++i) {
    if (cs[i].path == l.cuda_path13) at_cuda_path = i;
    if (cs[i].path == l.venv13) at_venv = i;
  }
  for (std::size_t i = 0; i < cs.size(); ++i)
    if (cs[i].origin == "/usr/local/cuda") usr_local_after_cuda_path &= i > at_cuda_path && i < at_venv;
  CHECK(usr_local_after_cuda_path);
}

TEST(soname_major) {
  CHECK_EQ(lt::soname_major("/x/libcublasLt.so.13"), 13);
  CHECK_EQ(lt::soname_major("libcublasLt.so.12.9.1.3"), 12);
  CHECK_EQ(lt::soname_major("/x/libcublasLt.so"), 0);
  CHECK_EQ(lt::soname_major("/x/libcublasLt.so.x"), 0);
  CHECK_EQ(lt::soname_major("/x/libcublas.so.13"), 0);
}

TEST(forced_path_and_off) {
  Layout l("forced");
  Env e = l.env;
  e.vars["CALMOE_CUBLASLT"] = l.venv13;
  bool off = true;
  const std::vector<lt::Candidate> cs = lt::candidates(e.fn(), &off);
  CHECK(!off);
  CHECK_EQ(cs.size(), std::size_t(1));  // only it is tried
  if (!cs.empty()) {
    CHECK_STR(cs[0].path, l.venv13);
    CHECK_STR(cs[0].origin, "CALMOE_CUBLASLT");
  }
  lt::LoadResult r = lt::load(e.fn(), /*allow_fake=*/true);
  CHECK(r.ok);
  CHECK_STR(r.lib.path, l.venv13);
  CHECK_STR(r.lib.origin, "CALMOE_CUBLASLT");
  CHECK(r.lib.fake);
  CHECK_EQ(r.lib.version, std::size_t(130100));
  // every entry point resolved, and callable
  CHECK(r.lib.api.GetVersion && r.lib.api.Create && r.lib.api.Matmul && r.lib.api.MatmulAlgoGetHeuristic);
  if (r.ok) {
    lt::Handle h = nullptr;
    CHECK_EQ(r.lib.api.Create(&h), 0);
    CHECK_EQ(r.lib.api.Destroy(h), 0);
  }
  release(r);
  // a forced path that is not there: nothing else is tried, and the reason names it
  e.vars["CALMOE_CUBLASLT"] = (g_root / "nowhere/libcublasLt.so.13").string();
  r = lt::load(e.fn(), true);
  CHECK(!r.ok);
  CHECK_EQ(r.tried.size(), std::size_t(1));
  CHECK_HAS(r.reason, "nowhere/libcublasLt.so.13 (CALMOE_CUBLASLT)");
  release(r);
  for (const char* v : {"off", "OFF", "0"}) {
    e.vars["CALMOE_CUBLASLT"] = v;
    off = false;
    CHECK(lt::candidates(e.fn(), &off).empty());
    CHECK(off);
    r = lt::load(e.fn(), true);
    CHECK(!r.ok);
    CHECK_STR(r.reason, "CALMOE_CUBLASLT=off");
    CHECK(r.tried.empty());
  }
  // an empty value is as if unset
  e.vars["CALMOE_CUBLASLT"] = "";
  CHECK(lt::candidates(e.fn()).size() > 1);
}

TEST(fake_needs_allow_fake) {
  Layout l("fake");
  lt::Candidate c{l.cuda13, "CUDA_HOME", false, false};
  lt::Library lib;
  std::string why;
  CHECK(!lt::open_library(c, /*allow_fake=*/false, &lib, &why));
  CHECK_HAS(why, "fake-cublaslt");
  CHECK(lib.handle == nullptr);
  CHECK(lt::open_library(c, /*allow_fake=*/true, &lib, &why));
  CHECK(lib.fake);
  CHECK_STR(lib.path, l.cuda13);
  CHECK_EQ(lib.version, std::size_t(130100));
  if (lib.handle) ::dlclose(lib.handle);
  lt::LoadResult none;
  release(none);
  if (machine_has_cublaslt()) return;
  // through the search: refused everywhere without allow_fake (each copy named in the reason),
  // the first candidate in the trees with it
  lt::LoadResult r = lt::load(l.env.fn(), false);
  CHECK(!r.ok);
  CHECK_HAS(r.reason, l.cuda13 + " (CUDA_HOME): tools/fake-cublaslt");
  CHECK_HAS(r.reason, l.venv13 + " (VIRTUAL_ENV): tools/fake-cublaslt");
  release(r);
  r = lt::load(l.env.fn(), true);
  CHECK(r.ok);
  CHECK_STR(r.lib.path, l.cuda13);
  CHECK_STR(r.lib.origin, "CUDA_HOME");
  release(r);
}

TEST(version_checked_against_soname) {
  Layout l("version");
  Env e = l.env;
  unsetenv("CALMOE_FAKE_CUBLASLT");
  e.vars["CALMOE_CUBLASLT"] = l.conda12;  // a .so.12 copy of a library that says 13.1
  lt::LoadResult r = lt::load(e.fn(), true);
  CHECK(!r.ok);
  CHECK_HAS(r.reason, "130100");
  CHECK_HAS(r.reason, "not a 12.x library");
  release(r);
  setenv("CALMOE_FAKE_CUBLASLT", "version=120900", 1);
  r = lt::load(e.fn(), true);
  CHECK(r.ok);
  CHECK_EQ(r.lib.version, std::size_t(120900));
  CHECK_STR(r.lib.path, l.conda12);
  release(r);
  e.vars["CALMOE_CUBLASLT"] = l.venv13;  // now the .so.13 copy says 12.9
  r = lt::load(e.fn(), true);
  CHECK(!r.ok);
  CHECK_HAS(r.reason, "not a 13.x library");
  release(r);
  setenv("CALMOE_FAKE_CUBLASLT", "version=110800", 1);  // too old for either soname
  e.vars["CALMOE_CUBLASLT"] = put_fake(g_root / "version/old", "libcublasLt.so.11");
  r = lt::load(e.fn(), true);
  CHECK(!r.ok);
  release(r);
  e.vars["CALMOE_CUBLASLT"] = l.conda12;
  r = lt::load(e.fn(), true);
  CHECK(!r.ok);
  CHECK_HAS(r.reason, "calmoe needs cuBLASLt 12 or 13");
  release(r);
  unsetenv("CALMOE_FAKE_CUBLASLT");
  if (machine_has_cublaslt()) return;
  // through the search, with the toolkit's .so.13 gone: a .so.12 copy saying 13 is passed over
  Layout m("version-search");
  fs::remove(m.cuda13);
  fs::remove(m.cuda_path13);
  r = lt::load(m.env.fn(), true);
  CHECK(r.ok);
  CHECK_STR(r.lib.path, m.venv13);
  const std::vector<std::string> refused = tried_inside(r, g_root);
  CHECK_EQ(refused.size(), std::size_t(1));
  if (!refused.empty()) CHECK_HAS(refused[0], m.cuda12 + " (CUDA_HOME): cublasLtGetVersion() = 130100");
  release(r);
}

TEST(non_library_refused_with_reason) {
  const fs::path dir = tree("junk");
  const std::string text = put_text(dir / "lib64", "libcublasLt.so.13", "not a library\n");
  lt::Candidate c{text, "CUDA_HOME", false, false};
  lt::Library lib;
  std::string why;
  CHECK(!lt::open_library(c, true, &lib, &why));
  CHECK(!why.empty());
  CHECK_HAS(why, text);  // dlerror names the file and says what is wrong with it
  std::printf("  a text file: %s\n", why.c_str());
  // a real library that is not cuBLASLt (a copy of the C math library): no entry points
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(static_cast<double (*)(double)>(&::cos)), &info) && info.dli_fname && fs::exists(info.dli_fname)) {
    const fs::path other = dir / "other";
    fs::create_directories(other);
    fs::copy_file(info.dli_fname, other / "libcublasLt.so.13", fs::copy_options::overwrite_existing);
    lt::Candidate o{(other / "libcublasLt.so.13").string(), "CUDA_HOME", false, false};
    CHECK(!lt::open_library(o, true, &lib, &why));
    CHECK_HAS(why, "no symbol cublasLt");
    std::printf("  a copy of %s: %s\n", info.dli_fname, why.c_str());
  }
  // a missing file
  lt::Candidate gone{(dir / "gone/libcublasLt.so.13").string(), "CUDA_HOME", false, false};
  CHECK(!lt::open_library(gone, true, &lib, &why));
  CHECK(!why.empty());
  if (machine_has_cublaslt()) return;
  // the search goes on past the junk to the next candidate, and keeps its reason
  Layout l("junk-search");
  put_text(l.cuda_home / "lib64", "libcublasLt.so.13", "not a library\n");
  // (the toolkit's .so.12 copy is passed over too: the fake says 13.1)
  lt::LoadResult r = lt::load(l.env.fn(), true);
  CHECK(r.ok);
  CHECK_STR(r.lib.path, l.cuda_path13);
  const std::vector<std::string> refused = tried_inside(r, g_root);
  CHECK_EQ(refused.size(), std::size_t(2));
  if (refused.size() == 2) {
    CHECK_HAS(refused[0], l.cuda13 + " (CUDA_HOME): " + l.cuda13);  // dlerror names the file
    CHECK_HAS(refused[1], l.cuda12 + " (CUDA_HOME): cublasLtGetVersion() = 130100");
  }
  release(r);
}

TEST(unversioned_never_tried) {
  if (machine_has_cublaslt()) return;
  const fs::path root = tree("unversioned");
  Env e;
  e.vars["CUDA_HOME"] = (root / "cuda").string();
  e.vars["VIRTUAL_ENV"] = (root / "venv").string();
  e.vars["HOME"] = (root / "home").string();
  const std::string a = put_fake(root / "cuda/lib64", "libcublasLt.so");
  const std::string b = put_fake(root / "venv/lib/python3.11/site-packages/nvidia/cu13/lib", "libcublasLt.so");
  CHECK(inside(lt::candidates(e.fn()), root).empty());
  lt::LoadResult r = lt::load(e.fn(), true);
  CHECK(!r.ok);
  for (const auto& t : r.tried) CHECK(!under(t, root));
  CHECK(r.reason.find(a) == std::string::npos && r.reason.find(b) == std::string::npos);
  release(r);
}

TEST(reason_lists_what_was_tried) {
  if (machine_has_cublaslt()) return;
  Layout l("reason");
  // every copy refused: a fake without allow_fake, so each candidate has its line
  lt::LoadResult r = lt::load(l.env.fn(), false);
  CHECK(!r.ok);
  for (const std::string& p : {l.cuda13, l.cuda12, l.cuda_path13, l.venv13, l.venv12, l.venv_old13, l.conda12, l.user13}) CHECK_HAS(r.reason, p);
  CHECK_HAS(r.reason, "libcublasLt.so.13 (system loader): ");
  CHECK_HAS(r.reason, "libcublasLt.so.12 (system loader): ");
  CHECK(r.reason.find("already loaded") == std::string::npos);  // not being loaded is no failure to report
  CHECK_HAS(r.reason, "CALMOE_CUBLASLT=/path/to/libcublasLt.so.13");
  for (const std::string& line : r.tried) CHECK(line.find("): ") != std::string::npos && line.size() > line.find("): ") + 3);  // each with its why
  std::printf("  reason: %.300s...\n", r.reason.c_str());
  release(r);
  // nowhere to look at all: still a reason, with the hint
  Env e;
  e.vars["HOME"] = tree("reason-empty").string();
  r = lt::load(e.fn(), true);
  CHECK(!r.ok);
  CHECK_HAS(r.reason, "no usable libcublasLt.so.13 or .so.12");
  release(r);
}

TEST(already_loaded_copy_first) {
  if (machine_has_cublaslt()) return;
  Layout l("loaded");
  const std::string mine = put_fake(g_root / "loaded/by-someone-else", "libcublasLt.so.13");
  void* h = ::dlopen(mine.c_str(), RTLD_NOW | RTLD_LOCAL);  // as PyTorch would have, before calmoe
  CHECK(h != nullptr);
  if (!h) return;
  lt::LoadResult r = lt::load(l.env.fn(), true);
  CHECK(r.ok);
  CHECK_STR(r.lib.origin, "already loaded");
  CHECK_STR(r.lib.path, mine);  // the file that is loaded, not the soname
  CHECK(r.lib.handle != nullptr);
  if (r.lib.handle) ::dlclose(r.lib.handle);
  r.lib.handle = nullptr;
  ::dlclose(h);
  release(r);
}

}  // namespace

int main(int argc, char** argv) {
#ifdef CALMOE_FAKE_CUBLASLT_FILE
  g_fake = CALMOE_FAKE_CUBLASLT_FILE;
#endif
  if (argc > 1) g_fake = argv[1];
  if (g_fake.empty() || !fs::exists(g_fake)) {
    std::fprintf(stderr, "cublaslt_loader_test: the fake library (tools/fake-cublaslt) is needed: pass its path (got '%s')\n", g_fake.c_str());
    return 1;
  }
  unsetenv("CALMOE_FAKE_CUBLASLT");
  std::string tmpl = (fs::temp_directory_path() / "calmoe-lt-loader-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) {
    std::perror("mkdtemp");
    return 1;
  }
  g_root = tmpl;
  const int rc = t::run_all("cublaslt_loader");
  std::error_code ec;
  fs::remove_all(g_root, ec);
  return rc;
}
