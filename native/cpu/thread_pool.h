// Transitional: the thread pool moved to native/host/ (host code both backends use). Delete this
// file once native/cuda/moe_engine.cu includes "host/thread_pool.h" (nothing else includes it).
#pragma once
#include "host/thread_pool.h"
