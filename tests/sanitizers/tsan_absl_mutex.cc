// ThreadSanitizer and Debian's Abseil. libabsl_synchronization.so is not built with TSan, so TSan does not
// see absl::Mutex lock or unlock (they are atomics and futex calls inside an uninstrumented library),
// and every access guarded by an absl::Mutex would look like a data race. Preloaded (LD_PRELOAD) into a
// TSan test, this library takes the place of the Mutex entry points: each calls the real one (the next
// definition, in libabsl_synchronization.so) and tells TSan what happened with its mutex annotations
// (sanitizer/tsan_interface.h), so absl::Mutex is a mutex to TSan as pthread_mutex_t is; Await and
// LockWhen are re-done on top of those (see below). gRPC's own
// locks (gpr_mu, grpc_core::Mutex) are absl::Mutex too and go through here as well.
//
// In a process without TSan (ctest itself, python3, a shell) the annotation symbols are absent (weak,
// null) and the wrappers only forward. Built and used by tests/sanitize.sh.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

#define HPO_STR2(x) #x
#define HPO_STR(x) HPO_STR2(x)

extern "C" {
// From sanitizer/tsan_interface.h (clang 14), declared weak so that this library loads anywhere.
void __tsan_mutex_pre_lock(void* addr, unsigned flags) __attribute__((weak));
int __tsan_mutex_post_lock(void* addr, unsigned flags, int recursion) __attribute__((weak));
int __tsan_mutex_pre_unlock(void* addr, unsigned flags) __attribute__((weak));
void __tsan_mutex_post_unlock(void* addr, unsigned flags) __attribute__((weak));
}

namespace {

constexpr unsigned kReadLock = 1 << 3;      // __tsan_mutex_read_lock
constexpr unsigned kTryLock = 1 << 4;       // __tsan_mutex_try_lock
constexpr unsigned kTryLockFailed = 1 << 5; // __tsan_mutex_try_lock_failed

// The mangled name of absl::<inline namespace>::<cls>::<rest>, e.g. Mutex, "4LockEv".
std::string Mangled(const char* cls, const char* rest) {
  const std::string ns = HPO_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);  // "debian3" on Debian 12
  return "_ZN4absl" + std::to_string(ns.size()) + ns + std::to_string(std::string(cls).size()) + cls + rest;
}

template <typename Fn>
Fn Next(const char* cls, const char* rest) {
  const std::string name = Mangled(cls, rest);
  void* f = dlsym(RTLD_NEXT, name.c_str());
  if (f == nullptr) {
    std::fprintf(stderr, "tsan_absl_mutex: %s not found after this library\n", name.c_str());
    std::abort();
  }
  return reinterpret_cast<Fn>(f);
}

void PreLock(void* m, unsigned flags) {
  if (__tsan_mutex_pre_lock) __tsan_mutex_pre_lock(m, flags);
}
void PostLock(void* m, unsigned flags) {
  if (__tsan_mutex_post_lock) __tsan_mutex_post_lock(m, flags, 0);
}
void PreUnlock(void* m, unsigned flags) {
  if (__tsan_mutex_pre_unlock) __tsan_mutex_pre_unlock(m, flags);
}
void PostUnlock(void* m, unsigned flags) {
  if (__tsan_mutex_post_unlock) __tsan_mutex_post_unlock(m, flags);
}

using MutexFn = void (*)(absl::Mutex*);
using MutexBoolFn = bool (*)(absl::Mutex*);

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  static const MutexFn real = Next<MutexFn>("Mutex", "4LockEv");
  PreLock(this, 0);
  real(this);
  PostLock(this, 0);
}

void Mutex::Unlock() {
  static const MutexFn real = Next<MutexFn>("Mutex", "6UnlockEv");
  PreUnlock(this, 0);
  real(this);
  PostUnlock(this, 0);
}

void Mutex::ReaderLock() {
  static const MutexFn real = Next<MutexFn>("Mutex", "10ReaderLockEv");
  PreLock(this, kReadLock);
  real(this);
  PostLock(this, kReadLock);
}

void Mutex::ReaderUnlock() {
  static const MutexFn real = Next<MutexFn>("Mutex", "12ReaderUnlockEv");
  PreUnlock(this, kReadLock);
  real(this);
  PostUnlock(this, kReadLock);
}

bool Mutex::TryLock() {
  static const MutexBoolFn real = Next<MutexBoolFn>("Mutex", "7TryLockEv");
  PreLock(this, kTryLock);
  const bool ok = real(this);
  PostLock(this, ok ? kTryLock : kTryLock | kTryLockFailed);
  return ok;
}

bool Mutex::ReaderTryLock() {
  static const MutexBoolFn real = Next<MutexBoolFn>("Mutex", "13ReaderTryLockEv");
  PreLock(this, kReadLock | kTryLock);
  const bool ok = real(this);
  PostLock(this, ok ? kReadLock | kTryLock : kReadLock | kTryLock | kTryLockFailed);
  return ok;
}

// Conditions. absl evaluates a waiter's Condition while it holds the mutex, but inside its own code (in
// the waiting thread, or in whichever thread unlocks), where no annotation can tell TSan that the mutex
// is held. So Await and LockWhen are done here with the annotated Lock and Unlock: check the condition
// holding the mutex, and if false unlock, sleep a little (50 us doubling to 2 ms) and lock again. They
// keep their contract (return holding the mutex, with the condition true or the deadline passed); only
// the wake-up is later. The *WithTimeout forms are not defined here: in Debian's Abseil each calls its
// *WithDeadline form through the PLT, which lands here.
namespace {
void Nap(int* us) {
  usleep(static_cast<useconds_t>(*us));
  if (*us < 2000) *us *= 2;
}
}  // namespace

void Mutex::Await(const Condition& cond) {
  for (int us = 50; !cond.Eval();) {
    Unlock();
    Nap(&us);
    Lock();
  }
}
bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  for (int us = 50; !cond.Eval();) {
    if (Now() >= deadline) return false;
    Unlock();
    Nap(&us);
    Lock();
  }
  return true;
}
void Mutex::LockWhen(const Condition& cond) {
  Lock();
  Await(cond);
}
bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  Lock();
  return AwaitWithDeadline(cond, deadline);
}
void Mutex::ReaderLockWhen(const Condition& cond) {
  ReaderLock();
  for (int us = 50; !cond.Eval();) {
    ReaderUnlock();
    Nap(&us);
    ReaderLock();
  }
}
bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  ReaderLock();
  for (int us = 50; !cond.Eval();) {
    if (Now() >= deadline) return false;
    ReaderUnlock();
    Nap(&us);
    ReaderLock();
  }
  return true;
}

// CondVar's waits release the mutex while they wait and hold it again when they return (gRPC's
// gpr_cv_wait is CondVar::WaitWithDeadline); no client code runs inside: to TSan, an unlock and a lock.
namespace {
template <typename Fn, typename... Args>
auto Released(Mutex* mu, Fn real, Args... args) {
  PreUnlock(mu, 0);
  PostUnlock(mu, 0);
  auto r = real(args...);
  PreLock(mu, 0);
  PostLock(mu, 0);
  return r;
}
}  // namespace

void CondVar::Wait(Mutex* mu) {
  static const auto real = Next<void (*)(CondVar*, Mutex*)>("CondVar", "4WaitEPNS0_5MutexE");
  Released(mu, [&](CondVar* cv, Mutex* m) { real(cv, m); return 0; }, this, mu);
}
bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  static const auto real = Next<bool (*)(CondVar*, Mutex*, Time)>(
      "CondVar", "16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  return Released(mu, real, this, mu, deadline);
}

ABSL_NAMESPACE_END
}  // namespace absl
