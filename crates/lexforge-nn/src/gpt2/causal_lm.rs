//! GPT-2 as a [`CausalLm`]: prefill and step through its KV cache, greedy picks on the
//! device, and the log-probabilities of a whole sequence.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::model::{Gpt2, Gpt2Cache};
use crate::error::{NnError, Result};
use crate::generate::CausalLm;

fn rows(logits: Tensor<3>) -> Result<Vec<Vec<f32>>> {
    let [b, t, v] = logits.dims();
    let last = logits.narrow(1, t - 1, 1).reshape([b, v]);
    let flat = last
        .into_data()
        .convert::<f32>()
        .try_into_vec_as::<f32>()
        .map_err(|e| NnError::InvalidInput {
            reason: format!("cannot read logits: {e:?}"),
        })?;
    Ok(flat.chunks(v).map(<[f32]>::to_vec).collect())
}

fn id_tensor(ids: Vec<i64>, shape: [usize; 2], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(ids, shape), device)
}

impl CausalLm for Gpt2 {
    type State = (Gpt2Cache, Device);

    fn max_positions(&self) -> Option<usize> {
        Some(self.n_positions())
    }

    fn prefill(&self, prompt: &[u32], batch: usize) -> Result<(Self::State, Vec<Vec<f32>>)> {
        let device = self.wte.weight.val().device();
        let ids: Vec<i64> = (0..batch)
            .flat_map(|_| prompt.iter().map(|&t| i64::from(t)))
            .collect();
        let mut cache = Gpt2Cache::default();
        let logits =
            self.forward_cached(id_tensor(ids, [batch, prompt.len()], &device), &mut cache)?;
        Ok(((cache, device), rows(logits)?))
    }

    fn step(&self, state: &mut Self::State, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        let x = id_tensor(ids, [tokens.len(), 1], &state.1);
        rows(self.forward_cached(x, &mut state.0)?)
    }

    fn step_argmax(&self, state: &mut Self::State, tokens: &[u32]) -> Result<Vec<u32>> {
        let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        let x = id_tensor(ids, [tokens.len(), 1], &state.1);
        let logits = self.forward_cached(x, &mut state.0)?;
        let [b, _, v] = logits.dims();
        // Only the ids come back from the device.
        let picked = logits
            .reshape([b, v])
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_into_vec_as::<i64>()
            .map_err(|e| NnError::InvalidInput {
                reason: format!("cannot read the picked ids: {e:?}"),
            })?;
        Ok(picked
            .iter()
            .map(|&i| u32::try_from(i).unwrap_or(0))
            .collect())
    }

    fn log_probs(&self, ids: &[u32]) -> Result<Vec<Vec<f32>>> {
        let device = self.wte.weight.val().device();
        let x = id_tensor(
            ids.iter().map(|&t| i64::from(t)).collect(),
            [1, ids.len()],
            &device,
        );
        let logits = self.forward(x)?;
        let [_, _, v] = logits.dims();
        let flat = log_softmax(logits, 2)
            .into_data()
            .convert::<f32>()
            .try_into_vec_as::<f32>()
            .map_err(|e| NnError::InvalidInput {
                reason: format!("cannot read logits: {e:?}"),
            })?;
        Ok(flat.chunks(v).map(<[f32]>::to_vec).collect())
    }
}
