# CPU-only build of the calmoe addon with node-gyp: the fallback for machines without CMake.
# The main build is CMake (CMakeLists.txt, driven by cmake-js); both compile the same sources.
{
  "targets": [
    {
      "target_name": "calmoe_avx2",
      "type": "static_library",
      "sources": ["<!@(node -p \"require('fs').readdirSync('native/cpu').filter(f => f.endsWith('_avx2.cpp')).map(f => 'native/cpu/' + f).join(' ')\")"],
      "include_dirs": ["native/include", "native"],
      "defines": ["CALMOE_WITH_CUDA=0"],
      "cflags_cc": ["-std=c++17", "-O3", "-ffp-contract=off", "-fno-math-errno", "-fexceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "conditions": [["target_arch=='x64'", { "cflags_cc": ["-mavx2", "-mfma", "-mf16c"] }]]
    },
    {
      "target_name": "calmoe",
      "dependencies": ["calmoe_avx2"],
      "sources": [
        "<!@(node -p \"['native/core', 'native/host', 'native/cpu', 'native/addon'].flatMap(d => require('fs').readdirSync(d).filter(f => f.endsWith('.cpp') && !f.endsWith('_avx2.cpp')).map(f => d + '/' + f)).join(' ')\")"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native/include", "native"],
      "defines": ["CALMOE_WITH_CUDA=0", "NAPI_VERSION=9", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O3", "-ffp-contract=off", "-fno-math-errno", "-fexceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "xcode_settings": { "GCC_ENABLE_CPP_EXCEPTIONS": "YES", "CLANG_CXX_LANGUAGE_STANDARD": "c++17" },
      "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1 } }
    }
  ]
}
