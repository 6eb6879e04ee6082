# Compiler settings of the libFuzzer build (-DTUNNELKIT_FUZZ=ON, CC=clang CXX=clang++).
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "TUNNELKIT_FUZZ needs clang (CC=clang CXX=clang++), not ${CMAKE_CXX_COMPILER_ID}")
endif()
# Boost 1.74 enables co_await only for the compilers it knows (g++ >= 10, MSVC): clang 14 with
# libstdc++ has <coroutine> too.
add_compile_definitions(BOOST_ASIO_HAS_CO_AWAIT BOOST_ASIO_HAS_STD_COROUTINE)
# Every source is instrumented for coverage and checked by ASan+UBSan; the fuzz entry points
# link libFuzzer's main (tests/fuzz). -fsanitize=function stays off and must come after the
# -fsanitize lists: clang 14 cannot assemble its checks in coroutine frames ("Cannot represent
# a difference across sections").
# TUNNELKIT_FUZZ_SANITIZE=OFF gives a plain build (coverage only, 3-4x the executions
# per second) for long campaigns; each target still needs a run under the sanitizers.
option(TUNNELKIT_FUZZ_SANITIZE "Fuzz targets checked by ASan+UBSan" ON)
if(TUNNELKIT_FUZZ_SANITIZE)
  set(TUNNELKIT_FUZZ_SANITIZERS -fsanitize=address,undefined -fno-sanitize-recover=undefined
      -fno-sanitize=function)
else()
  set(TUNNELKIT_FUZZ_SANITIZERS)
endif()
# Line tables are all a sanitizer report needs, and compile faster than full debug info (the
# last -g option wins over the build type's -g).
set(TUNNELKIT_FUZZ_DEBUG_INFO -gline-tables-only CACHE STRING "Debug info option of the fuzz build")
add_compile_options(-fsanitize=fuzzer-no-link ${TUNNELKIT_FUZZ_SANITIZERS} -fno-omit-frame-pointer
                    ${TUNNELKIT_FUZZ_DEBUG_INFO})
add_link_options(${TUNNELKIT_FUZZ_SANITIZERS})
# g++-only warning options used by the regular build are unknown to clang.
add_compile_options(-Wno-unknown-warning-option)
add_compile_definitions(TUNNELKIT_VERSION_STRING="${PROJECT_VERSION}")
