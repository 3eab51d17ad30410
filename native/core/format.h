// Numbers in error messages: doubles to 9 significant digits, float32 values in the shortest
// decimal that reads back as the same float (1.4f prints as 1.4, not 1.39999998).
#pragma once
#include <cstdlib>
#include <sstream>
#include <string>

namespace calmoe {

inline std::string fmt(double v) {
  std::ostringstream s;
  s.precision(9);
  s << v;
  return s.str();
}

inline std::string fmt_f32(float v) {
  for (int p = 1; p <= 9; ++p) {
    std::ostringstream s;
    s.precision(p);
    s << v;
    if (std::strtof(s.str().c_str(), nullptr) == v) return s.str();
  }
  return fmt(v);
}

}  // namespace calmoe
