# tools/fake-cublaslt as CMake targets, for the main build (tests and CUDA on) and the emulator build
# (tools/cuda-emu), included by both:
#   fake_cublaslt       the library, ${CMAKE_BINARY_DIR}/fake-cublaslt/libcublasLt.so.13 (soname too)
#   fake_cublaslt_test  its test, a ctest test of the same name
#   calmoe_use_fake_cublaslt(target): target gets CALMOE_FAKE_CUBLASLT_FILE="<the library's path>"
#   and is built after it.
set(CALMOE_FAKE_CUBLASLT_SOURCE_DIR ${CMAKE_CURRENT_LIST_DIR})

function(calmoe_add_fake_cublaslt native_dir)
  set(dir ${CALMOE_FAKE_CUBLASLT_SOURCE_DIR})
  add_library(fake_cublaslt SHARED ${dir}/fake_cublaslt.cpp)
  # Exactly cuBLASLt's entry points and the marker are exported (exports.map); no C++ "unique"
  # symbols, so that dlclose really unloads it (the loader's tests open and close many copies).
  set_target_properties(fake_cublaslt PROPERTIES PREFIX "lib" OUTPUT_NAME "cublasLt" SUFFIX ".so.13"
    LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fake-cublaslt CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON
    LINK_DEPENDS ${dir}/exports.map)
  target_include_directories(fake_cublaslt PRIVATE ${native_dir})
  target_compile_options(fake_cublaslt PRIVATE -O2 -ffp-contract=off -Wall -Wextra $<$<CXX_COMPILER_ID:GNU>:-fno-gnu-unique>)
  target_link_options(fake_cublaslt PRIVATE -Wl,--version-script=${dir}/exports.map)

  add_executable(fake_cublaslt_test ${dir}/fake_cublaslt_test.cpp)
  target_include_directories(fake_cublaslt_test PRIVATE ${native_dir})
  target_compile_options(fake_cublaslt_test PRIVATE -O2 -ffp-contract=off -Wall -Wextra)
  target_link_libraries(fake_cublaslt_test PRIVATE ${CMAKE_DL_LIBS})
  add_dependencies(fake_cublaslt_test fake_cublaslt)
  add_test(NAME fake_cublaslt_test COMMAND fake_cublaslt_test $<TARGET_FILE:fake_cublaslt>)
endfunction()

function(calmoe_use_fake_cublaslt target)
  target_compile_definitions(${target} PRIVATE CALMOE_FAKE_CUBLASLT_FILE="$<TARGET_FILE:fake_cublaslt>")
  add_dependencies(${target} fake_cublaslt)
endfunction()
