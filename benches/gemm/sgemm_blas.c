/* The matrix products of the language-model benches (docs/benchmarks.md, "gemm by
 * measurement") through a system BLAS's cblas_sgemm, for comparison with the `gemm` crate that
 * burn's flex backend and lexforge's kernels use (`gemm-shapes`, same shapes, same order).
 *
 *   sudo apt-get install libopenblas-dev libblis-dev
 *   gcc -O2 -o /tmp/sgemm_openblas benches/gemm/sgemm_blas.c \
 *       -I/usr/include/x86_64-linux-gnu/openblas-pthread \
 *       -L/usr/lib/x86_64-linux-gnu/openblas-pthread -lopenblas
 *   gcc -O2 -o /tmp/sgemm_blis benches/gemm/sgemm_blas.c \
 *       -L/usr/lib/x86_64-linux-gnu/blis-openmp -lblis -fopenmp
 *   OPENBLAS_NUM_THREADS=2 /tmp/sgemm_openblas; BLIS_NUM_THREADS=2 /tmp/sgemm_blis
 *
 * Each line: the median of 15 calls (the per-head attention product: 48 calls in a row).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <cblas.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){
  /* name M K N transA transB: C[M,N] = op(A)[M,K] op(B)[K,N] */
  struct {const char*name;int m,k,n,ta,tb;} s[]={
    {"c_attn x@W [2048,384]x[384,1152]",2048,384,1152,0,0},
    {"c_fc x@W [2048,384]x[384,1536]",2048,384,1536,0,0},
    {"mlp proj [2048,1536]x[1536,384]",2048,1536,384,0,0},
    {"head x@wte^T [2048,384]x[384,8000]",2048,384,8000,0,1},
    {"head dW x^T@dy [384,2048]x[2048,8000]",384,2048,8000,1,0},
    {"c_fc dx dy@W^T [2048,1536]x[1536,384]",2048,1536,384,0,1},
    {"q@k^T per head [256,64]x[64,256] x48",256,64,256,0,1},
    {"lstm input side [2048,512]x[512,2048]",2048,512,2048,0,0},
    {"lstm step [16,512]x[512,2048]",16,512,2048,0,0},
  };
  int ns=sizeof(s)/sizeof(s[0]);
  for(int i=0;i<ns;i++){
    int m=s[i].m,k=s[i].k,n=s[i].n;
    float*A=malloc(sizeof(float)*m*k),*B=malloc(sizeof(float)*k*n),*C=malloc(sizeof(float)*m*n);
    for(long j=0;j<(long)m*k;j++)A[j]=(j%13)*0.01f; for(long j=0;j<(long)k*n;j++)B[j]=(j%7)*0.01f;
    int reps = (i==6)? 48 : 1;
    double t[15];
    for(int r=0;r<15;r++){
      double t0=now();
      for(int q=0;q<reps;q++)
      cblas_sgemm(CblasRowMajor, s[i].ta?CblasTrans:CblasNoTrans, s[i].tb?CblasTrans:CblasNoTrans, m,n,k,1.0f,A,s[i].ta?m:k,B,s[i].tb?k:n,0.0f,C,n);
      t[r]=now()-t0;
    }
    qsort(t,15,sizeof(double),cmp);
    double med=t[7];
    printf("%-42s %8.3f ms %7.1f GFLOP/s\n",s[i].name,med*1e3,2.0*m*k*n*reps/med/1e9);
    free(A);free(B);free(C);
  }
  return 0;
}
